"""`edge-llama demo`: ask the edge model one question and see how fast it answers."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "demo",
        help="Chat with a checkpoint once: prompt in, streamed answer and speed out.",
        description=(
            "Runs one prompt through the edge model on this machine — the same host-side runner "
            "(AR-sized prompt chunks, static KV window) an exported model uses on a device — and prints "
            "the answer with time to first token and decode speed."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        default="DEFAULT",
        help="An alias (DEFAULT = SmolLM2-135M-Instruct, shipped offline), a checkpoint folder, a hub id or a .gguf file.",
    )
    parser.add_argument("--prompt", default="What is gravity?", help="The question to ask.")
    parser.add_argument("--raw", action="store_true", help="Send the prompt as is, without the chat template.")
    parser.add_argument("--system", default=None, help="A system message for the chat template.")
    parser.add_argument("--max-output-tokens", type=int, default=128, help="Stop after this many new tokens.")
    parser.add_argument("--context-length", type=int, default=None, help="CL of the static graphs (default: the checkpoint's, else 4096).")
    parser.add_argument("--do-sample", action="store_true", help="Sample instead of greedy decoding.")
    parser.add_argument("--temperature", type=float, default=0.7, help="Sampling temperature (with --do-sample).")
    parser.add_argument("--top-p", type=float, default=0.9, help="Nucleus sampling mass (with --do-sample).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed for sampling.")
    parser.add_argument("--no-stream", action="store_true", help="Print the answer at the end instead of as it is generated.")
    web = parser.add_argument_group("web chat page (needs the 'web' extra)")
    web.add_argument("--web", action="store_true", help="Serve a chat page instead of answering --prompt once.")
    web.add_argument("--host", default="127.0.0.1", help="Address the page is served on (loopback unless --allow-remote).")
    web.add_argument("--port", type=int, default=8000, help="Port the page is served on (0: any free port).")
    web.add_argument(
        "--allow-remote", action="store_true", help="Allow a --host other machines can reach (the page has no authentication)."
    )
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from edge_llama import EdgeLlamaForCausalLM, load_tokenizer
    from edge_llama.generation.chat import encode_prompt, generate_reply

    if args.max_output_tokens < 1:
        raise _usage_error(f"--max-output-tokens must be at least 1, got {args.max_output_tokens}")
    torch.manual_seed(args.seed)
    if args.web:
        return _serve_web(args)
    logger.info("Loading %s …", args.checkpoint)
    tokenizer = load_tokenizer(args.checkpoint)  # first: a missing tokenizer should fail before the slow part
    model = EdgeLlamaForCausalLM.from_pretrained(args.checkpoint, context_length=args.context_length)
    config = model.config
    input_ids = encode_prompt(tokenizer, args.prompt, raw=args.raw, system=args.system)
    stream = not (args.no_stream or args.quiet)
    if not args.quiet:
        print(
            f"Model:    {args.checkpoint} · {config.num_hidden_layers} layers · CL {config.context_length} · "
            f"{_chunking(model)} · {getattr(model.runner.backend, 'description', 'host (PyTorch)')}"
        )
        print(f"Prompt:   {args.prompt}")
        print("Response: ", end="", flush=True)
    reply = generate_reply(
        model,
        tokenizer,
        input_ids,
        max_new_tokens=args.max_output_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        echo=stream,
    )
    if args.quiet:
        print(reply.text)
        return 0
    if not stream:
        print(reply.text)
    print(
        f"\n-- {reply.prompt_tokens} prompt tokens · {reply.output_tokens} new tokens · "
        f"time to first token {reply.seconds_to_first_token:.2f} s · "
        f"decode {reply.decode_tokens_per_second:.1f} tokens/s"
        f"{' · stopped at end of turn' if reply.stopped_on_eos else ' · stopped at --max-output-tokens'}"
    )
    return 0


def _chunking(model) -> str:
    """How the prompt goes in: the static graphs' AR lengths, or a program's largest chunk."""
    max_seq_len = getattr(model.runner.backend, "max_seq_len", None)  # programs that keep their own cache
    if max_seq_len:
        return f"chunks of up to {max_seq_len} tokens"
    return f"AR {'/'.join(map(str, model.config.ar_lengths))}"


def _serve_web(args: argparse.Namespace) -> int:
    try:
        from edge_llama.web import ChatOptions, ChatService, server
    except ImportError as error:
        raise _usage_error(f"--web needs the web extra ({error.name} is missing): pip install 'edge-llama[web]'") from error

    if not 0 <= args.port <= 65535:
        raise _usage_error(f"--port must be in 0..65535, got {args.port}")
    sock = server.bind(args.host, args.port, args.allow_remote)  # before the slow load: a bad --host fails at once
    options = ChatOptions(
        context_length=args.context_length,
        max_new_tokens=args.max_output_tokens,
        system=args.system,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
    )
    service = ChatService(args.checkpoint, options)  # loads in the background; the page shows how it went
    print(f"edge-llama chat: {server.url_of(sock)} ({args.checkpoint}; Ctrl+C stops)", flush=True)
    uvicorn_server = server.make_server(service, sock, args.allow_remote, log_level="info" if args.verbose else "warning")
    uvicorn_server.run(sockets=[sock])
    return 0


def _usage_error(message: str):
    from edge_llama.errors import EdgeLlamaConfigError

    return EdgeLlamaConfigError(message)
