@_exported import GraftTensor
