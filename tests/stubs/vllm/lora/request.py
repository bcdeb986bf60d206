"""Stand-in ``vllm.lora.request.LoRARequest``: its fields from the pinned vLLM's source (msgspec Struct,
positional in field order), and its check that the int id is at least 1."""

from vllm import CALLS, SIGNATURES, _bind


class LoRARequest:
    def __init__(self, *args, **kw):
        kw = _bind("LoRARequest", SIGNATURES["LoRARequest"], args, kw)
        if kw["lora_int_id"] < 1:
            raise ValueError(f"id must be > 0, got {kw['lora_int_id']}")
        self.lora_name, self.lora_int_id, self.lora_path = kw["lora_name"], kw["lora_int_id"], kw["lora_path"]
        CALLS.append(("LoRARequest", kw))
