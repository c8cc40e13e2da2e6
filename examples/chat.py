"""Chat with the embedded default model through transformers' generate().

    python examples/chat.py "What is the capital of France?"
    python examples/chat.py "What is gravity?" my-quantized-folder     # any checkpoint edge-llama loads
"""

import sys

from transformers import TextStreamer

from edge_llama import EdgeLlamaForCausalLM, load_tokenizer


def main(question: str, checkpoint: str = "DEFAULT", max_new_tokens: int = 64, context_length: int | None = None) -> str:
    # context_length: the static window of a float checkpoint (default 4096); a quantized folder keeps its own.
    model = EdgeLlamaForCausalLM.from_pretrained(checkpoint, context_length=context_length)
    tokenizer = load_tokenizer(checkpoint)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, streamer=TextStreamer(tokenizer, skip_prompt=True))
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


if __name__ == "__main__":
    main(*(sys.argv[1:3] or ["What is gravity?"]))
