"""Static decoding for the layout engine on GPUs: a compiled static KV cache whose finished pages' slots are
refilled with new pages (``static_decoding``, ``slot_refill``, ``kv_slots``), the decode step (``decode_step``),
each page's prompt encoding (``page_encoding``) and its positions (``rope_positions``)."""
