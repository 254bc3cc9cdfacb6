// GraftCaption: video captioning as PLLaVA does it, on top of the video (frames, frame encoder,
// pooling, captioned clips), text (decoder, tokenizer, metrics) and tuning (LoRA) modules.
@_exported import GraftTasks
@_exported import GraftText
@_exported import GraftTuning
@_exported import GraftVideo
