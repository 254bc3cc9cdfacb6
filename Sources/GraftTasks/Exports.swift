@_exported import GraftData
@_exported import GraftPoints
@_exported import GraftTuning
