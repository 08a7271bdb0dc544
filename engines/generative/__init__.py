"""The vision-language engines: dots.ocr for layout (``dots``, its prompts and output parser), Gemma for picture
crops (``gemma``), their shared options, batched generation with memory-aware batch sizes (``generation``,
``batch_sizing``) and the back-ends that run them (``backends``: transformers, static decoding, vLLM)."""
