"""`edge-llama evaluate`: perplexity or accuracy of any checkpoint the library loads."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(commands) -> argparse.ArgumentParser:
    from edge_llama.evaluation import available_tasks

    parser = commands.add_parser(
        "evaluate",
        help="Measure perplexity or multiple-choice accuracy of a float or quantized checkpoint.",
        description=(
            "Evaluates a checkpoint — float, a quantized folder (the device's numerics, simulated on this machine) "
            "or a hub id — on one or more tasks, through the same runner the exported graphs use. "
            "Prints a table; --output-json writes the numbers."
        ),
    )
    parser.add_argument("--checkpoint", default="DEFAULT", help="An alias, a checkpoint folder, a hub id or a .gguf file.")
    parser.add_argument(
        "--task", nargs="+", default=["wikitext-ppl"], metavar="TASK",
        help=f"One or more of: {', '.join(available_tasks())}.",
    )
    parser.add_argument(
        "--num-samples", type=int, default=None,
        help="Questions per task (a seeded subset; stratified by subject for MMLU), or windows for wikitext-ppl. Default: all.",
    )
    parser.add_argument(
        "--context-length", type=int, default=None,
        help="Longest sequence fed at once (the perplexity window); at most the model's. A float checkpoint is loaded with it.",
    )
    parser.add_argument(
        "--dataset-path", default=None,
        help="Local data: a text file/folder/saved dataset for wikitext-ppl ('wikitext-2' names the hub set), "
        "or a saved dataset / JSON lines file with the task's columns.",
    )
    parser.add_argument(
        "--reference-checkpoint", default=None,
        help="Float model for MMLU's KL divergence (default for a quantized checkpoint of a known base model: that model).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the question subset.")
    parser.add_argument("--output-json", default=None, help="Also write the results to this JSON file.")
    return parser


def run(args: argparse.Namespace) -> int:
    from edge_llama import EdgeLlamaForCausalLM, load_tokenizer
    from edge_llama.checkpoints import is_quantized_config, load_config
    from edge_llama.evaluation import available_tasks, evaluate, format_results
    from edge_llama.evaluation.tasks import TaskDataError, TaskError, check_context_length

    unknown = [task for task in args.task if task not in available_tasks()]
    if unknown:  # before the slow part
        raise TaskError(f"unknown task {unknown[0]!r}; choose one of {', '.join(available_tasks())}")
    if args.dataset_path is not None and args.dataset_path != "wikitext-2" and not Path(args.dataset_path).expanduser().exists():
        raise TaskDataError(f"--dataset-path {args.dataset_path} does not exist")
    tokenizer = load_tokenizer(args.checkpoint)
    _, config = load_config(args.checkpoint)
    quantized = is_quantized_config(config)
    if args.context_length is not None:
        check_context_length(args.context_length, config.max_position_embeddings)
    logger.info("Loading %s …", args.checkpoint)
    model = EdgeLlamaForCausalLM.from_pretrained(args.checkpoint, context_length=None if quantized else args.context_length)
    reference = _reference(args, model, quantized) if "mmlu" in args.task or "tiny-mmlu" in args.task else None
    results = []
    for task in args.task:
        result = evaluate(
            model, task, tokenizer=tokenizer, num_samples=args.num_samples, context_length=args.context_length,
            dataset_path=args.dataset_path, reference=reference, seed=args.seed, progress=not args.quiet,
        )
        results.append(result)
        logger.info("%s done in %.1f s", task, result.seconds)
    print(format_results(args.checkpoint, results))
    if args.output_json:
        payload = {"checkpoint": args.checkpoint, "results": [result.to_dict() for result in results]}
        path = Path(args.output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def _reference(args, model, quantized: bool):
    from edge_llama import EdgeLlamaForCausalLM
    from edge_llama.presets import model_presets

    name = args.reference_checkpoint
    if name is None and quantized:
        base = model.config.quantization_config.get("base_model")
        name = next((p.aliases[0] for p in model_presets().values() if base and p.base_model == base), None)
        if name is None:
            logger.warning("No float reference for KL divergence: pass --reference-checkpoint to get one.")
            return None
    if name is None:
        return None
    logger.info("Loading the float reference %s …", name)
    return EdgeLlamaForCausalLM.from_pretrained(name, context_length=model.config.context_length)
