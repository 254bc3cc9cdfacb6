@_exported import GraftData
@_exported import GraftTuning
