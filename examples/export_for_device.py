"""Export a checkpoint for a device target, then look at what was written.

    python examples/export_for_device.py                          # DEFAULT, w4a16, QNN context binaries for Snapdragon 8 Elite
    python examples/export_for_device.py DEFAULT onnx w4-rtn      # checkpoint, target, recipe

QNN bundles load again as models that run on the x86 HTP simulator (`from_pretrained(bundle)`).
"""

import sys
from pathlib import Path

from edge_llama import EdgeLlamaForCausalLM


def main(checkpoint: str = "DEFAULT", target: str = "qnn", recipe: str = "w4a16", output_dir: str | None = None,
         context_length: int = 256, **options) -> Path:
    model = EdgeLlamaForCausalLM.from_pretrained(checkpoint, context_length=context_length)
    quantized = model.quantize(recipe, num_samples=4)
    if target == "qnn":
        options.setdefault("device", "Snapdragon 8 Elite")
    folder = quantized.export(target, output_dir or f"exported-{target}", **options)
    for path in sorted(folder.iterdir()):
        print(f"{path.stat().st_size / 1e6:9.2f} MB  {path.name}")
    return folder


if __name__ == "__main__":
    main(*sys.argv[1:4])
