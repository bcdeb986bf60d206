"""Generation: the engines (hf, vllm, openai), the exact merge the hf engine serves an adapter with, the teacher's journal."""
