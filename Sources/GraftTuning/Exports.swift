@_exported import GraftModels
