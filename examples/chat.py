"""Chat with the embedded default model through transformers' generate().

    python examples/chat.py "What is the capital of France?"
"""

import sys

from transformers import TextStreamer

from edge_llama import EdgeLlamaForCausalLM, load_tokenizer


def main(question: str) -> str:
    model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=1024)
    tokenizer = load_tokenizer("DEFAULT")
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=64, do_sample=False, streamer=TextStreamer(tokenizer, skip_prompt=True))
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "What is gravity?")
