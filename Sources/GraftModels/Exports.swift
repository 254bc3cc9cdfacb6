@_exported import GraftNN
