"""Trace the prompt processor (AR=128) and the token generator (AR=1) with torch.export.

    python examples/export_graphs.py
"""

import torch

from edge_llama import EdgeLlamaForCausalLM


def main(context_length: int = 512) -> dict[int, torch.export.ExportedProgram]:
    model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=context_length)
    programs = {}
    for ar_length in model.config.ar_lengths:
        graph = model.graph(ar_length)
        programs[ar_length] = torch.export.export(graph, graph.example_inputs(), strict=True)
        print(f"AR={ar_length}: {len(programs[ar_length].graph.nodes)} nodes")
    return programs


if __name__ == "__main__":
    main()
