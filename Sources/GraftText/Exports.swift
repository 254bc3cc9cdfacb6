// GraftText: what captioning needs on the language side — GPT-2's byte-level BPE tokenizer,
// the GPT-2-layout decoder that loads Hugging Face model folders, and the COCO caption metrics.
// Tensors, layers and safetensors come from the modules below it.
@_exported import GraftModels
