"""`export(target="qai-hub", device=...)`: the `onnx` parts compiled and linked in Qualcomm AI Hub's cloud.

The same parts as `onnx` (each part × AR graph, weights in `model.data`, the part's AIMET
encodings) go up as AI Hub's AIMET-ONNX form — one `<graph>.aimet/` folder per graph holding
exactly one `.onnx`, one `.data` and one `.encodings` — and come back as Genie's per-part binaries:

1. `upload_model` + `submit_compile_job` per part × AR, to a QNN DLC
   (`--target_runtime qnn_dlc --quantize_full_type w8a16 --quantize_io --truncate_64bit_io`),
   the graph named for Genie (`--qnn_options context_enable_graphs=prompt_ar128_cl4096_1_of_N`);
2. `submit_link_job` per part: its prompt and token DLCs → one context binary, weights shared;
3. `submit_profile_job` per graph on a hosted device (skip with `skip_profiling=True`);
4. the linked binaries download as `<model>_part_i_of_N.bin`, beside `genie_config.json`,
   `htp_backend_ext_config.json`, `tokenizer.json`, `metadata.json` and a README (genie.py).

The jobs are planned as data first (`plan_jobs`), so everything up to the network call is testable.
Without an API token it stops before any work, naming both ways out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EdgeLlamaError
from ..presets import DevicePreset, find_device
from .genie import GENIE_INPUT_NAMES, genie_binary_name

if TYPE_CHECKING:
    from ..modeling_edge_llama import EdgeLlamaForCausalLM

logger = logging.getLogger(__name__)

QAI_HUB_PACKAGE = "qai-hub==0.56.0"
QAIRT_VERSION = "2.51"  # the QNN SDK the local `qnn` target compiles with; AI Hub reports its own per job


class QaiHubExportError(EdgeLlamaError, RuntimeError):
    """The qai-hub target cannot run: no client, no API token, or a job that failed."""


@dataclasses.dataclass(frozen=True)
class CompileSpec:
    """One `submit_compile_job`: a part × AR graph folder (`.aimet`) → a QNN DLC named for Genie."""

    graph_name: str
    part: str
    ar_length: int
    model_dir: Path
    options: str


@dataclasses.dataclass(frozen=True)
class LinkSpec:
    """One `submit_link_job`: every AR graph of a part → one weight-shared context binary."""

    part: str
    graph_names: tuple[str, ...]
    binary_file: str
    options: str = ""


@dataclasses.dataclass(frozen=True)
class ProfileSpec:
    """One `submit_profile_job` of one graph of a linked binary on a hosted device."""

    graph_name: str
    part: str
    options: str


@dataclasses.dataclass(frozen=True)
class HubJobPlan:
    """Every AI Hub job of one export, in submission order."""

    device_attributes: tuple[str, ...]
    compile: tuple[CompileSpec, ...]
    link: tuple[LinkSpec, ...]
    profile: tuple[ProfileSpec, ...]

    def to_dict(self) -> dict:
        return {
            "device_attributes": list(self.device_attributes),
            "compile": [{**dataclasses.asdict(c), "model_dir": c.model_dir.name} for c in self.compile],
            "link": [{**dataclasses.asdict(link), "graph_names": list(link.graph_names)} for link in self.link],
            "profile": [dataclasses.asdict(p) for p in self.profile],
        }


def hub_client():
    """The `qai_hub` client with a loaded API token, or a one-line error saying how to get one."""
    try:
        import qai_hub
        from qai_hub.client import UserError
    except ImportError as error:
        raise QaiHubExportError(
            f"the qai-hub target needs the qai_hub client: pip install 'edge-llama[qnn]' (or {QAI_HUB_PACKAGE}); "
            "target='qnn' compiles on this machine without it"
        ) from error
    client = qai_hub.Client()
    try:
        client.config  # noqa: B018 - reads ~/.qai_hub/client.ini (or $QAIHUB_CLIENT_INI); no network
    except UserError as error:
        raise QaiHubExportError(
            "no Qualcomm AI Hub API token is configured (qai_hub: "
            f"{str(error).splitlines()[0]}); run `qai-hub configure --api_token <your token>` "
            "(from https://workbench.aihub.qualcomm.com/account), or compile on this machine with target='qnn'"
        ) from error
    return client


def plan_jobs(onnx_dir: str | os.PathLike, upload_dir: str | os.PathLike, model_name: str, device: DevicePreset,
              skip_profiling: bool = False, int4_as_int8: bool = False) -> HubJobPlan:
    """Lays out the upload folders for the graphs of an `onnx` export and plans every job on them.

    Each `<graph>.aimet/` gets the graph (inputs renamed to Genie's: `position_ids_cos`/`_sin`), its
    part's encodings (renamed alike; with `int4_as_int8` the 4-bit weights of its convolutions and
    matmuls as 8-bit encodings of the same grid, see qdq.py) and a `model.data` holding only that
    graph's weights.
    """
    import onnx

    from ..quantization.encodings import Encodings
    from .qnn import genie_graph_name

    onnx_dir, upload_dir = Path(onnx_dir), Path(upload_dir)
    if device.ai_hub_chipset is None:
        raise QaiHubExportError(f"{device.name} has no ai_hub_chipset in configs/devices; AI Hub cannot pick a device for it")
    config = json.loads((onnx_dir / "config.json").read_text())
    num_parts, context_length, ar_lengths = config["num_parts"], config["context_length"], config["ar_lengths"]
    compiles, links, profiles = [], [], []
    for index in range(1, num_parts + 1):
        part = f"part_{index}_of_{num_parts}"
        encodings_file = onnx_dir / f"{part}.encodings"
        if not encodings_file.is_file():
            raise QaiHubExportError(f"{encodings_file} is missing: the qai-hub target uploads a quantized model's encodings")
        encodings = Encodings.read(encodings_file)
        for name, new_name in GENIE_INPUT_NAMES.items():
            if name in encodings.activations:
                encodings.activations[new_name] = dataclasses.replace(encodings.activations.pop(name), name=new_name)
        names = []
        for ar in ar_lengths:
            stem = f"{part}_ar{ar}_cl{context_length}"
            graph_name = genie_graph_name(ar, context_length, index, num_parts)
            folder = upload_dir / f"{stem}.aimet"
            folder.mkdir(parents=True)
            graph = onnx.load(str(onnx_dir / f"{stem}.onnx"))  # only this graph's weights
            _rename_inputs(graph.graph, GENIE_INPUT_NAMES)
            onnx.save(graph, str(folder / f"{stem}.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                      location="model.data", size_threshold=0)
            (_widen_int4_weights(encodings, graph.graph) if int4_as_int8 else encodings).write(folder / f"{stem}.encodings")
            outputs = ",".join(value.name for value in graph.graph.output)
            options = (
                "--target_runtime qnn_dlc --quantize_full_type w8a16 --quantize_io --truncate_64bit_io "
                f"--output_names {outputs} --qnn_options context_enable_graphs={graph_name}"
            )
            compiles.append(CompileSpec(graph_name, part, ar, folder, options))
            if not skip_profiling:
                profiles.append(ProfileSpec(graph_name, part, f"--qnn_options context_enable_graphs={graph_name} --max_profiler_iterations 50"))
            names.append(graph_name)
        links.append(LinkSpec(part, tuple(names), genie_binary_name(model_name, index, num_parts)))
    return HubJobPlan((f"chipset:{device.ai_hub_chipset}",), tuple(compiles), tuple(links), tuple(profiles))


def _widen_int4_weights(encodings, graph):
    """`encodings` with the 4-bit weights that `graph`'s convolutions and matmuls read as 8-bit ones."""
    from .qdq import accumulated_tensors

    accumulated = accumulated_tensors((node.op_type, list(node.input), list(node.output)) for node in graph.node)
    params = {name: encoding.widened_to_int8() if name in accumulated else encoding for name, encoding in encodings.params.items()}
    return dataclasses.replace(encodings, params=params)


def _rename_inputs(graph, names: dict[str, str]) -> None:
    for value in graph.input:
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = names.get(name, name)


def export_qai_hub(
    model: EdgeLlamaForCausalLM,
    output_dir: str | os.PathLike,
    device: str = "Snapdragon 8 Gen 3",
    parts: int | None = None,
    tokenizer=None,
    skip_profiling: bool = False,
    int4_as_int8: bool = False,
) -> list[Path]:
    """Compiles and links the model's parts in Qualcomm AI Hub and writes the Genie bundle into `output_dir`.

    Needs an API token (`qai-hub configure --api_token …`); `target="qnn"` compiles locally instead.
    `int4_as_int8` uploads 4-bit projection weights as 8-bit encodings of the same grid (see `export_qnn`).

    ```python
    >>> model.quantize("w4a16").export("qai-hub", "smollm2-genie", device="Snapdragon 8 Elite")
    ```
    """
    import qai_hub

    from .genie import validate_bundle, write_genie_files
    from .onnx_parts import export_onnx_parts
    from .qnn import check_quantized, bundle_prefix, bundle_tokenizer

    client = hub_client()  # before any work: no token, no export
    preset = find_device(device)
    check_quantized(model, preset)
    tokenizer = bundle_tokenizer(model, tokenizer)  # before any job: Genie needs it
    output_dir = Path(output_dir)
    model_name = bundle_prefix(model)
    with tempfile.TemporaryDirectory(prefix="edge_llama_qai_hub_") as scratch:
        scratch = Path(scratch)
        export_onnx_parts(model, scratch / "onnx", parts=parts)
        plan = plan_jobs(scratch / "onnx", scratch / "upload", model_name, preset, skip_profiling, int4_as_int8)
        hub_device = qai_hub.Device(attributes=list(plan.device_attributes))
        compiled = {}
        for spec in plan.compile:
            logger.info("AI Hub: compiling %s for %s", spec.graph_name, preset.name)
            compiled[spec.graph_name] = client.submit_compile_job(
                model=str(spec.model_dir), device=hub_device, name=f"{model_name}_{spec.graph_name}", options=spec.options
            )
        linked = {}
        for spec in plan.link:
            models = [_target_model(compiled[name]) for name in spec.graph_names]
            linked[spec.part] = client.submit_link_job(models, device=hub_device, name=f"{model_name}_{spec.part}", options=spec.options)
        profiles = {
            spec.graph_name: client.submit_profile_job(model=_target_model(linked[spec.part]), device=hub_device,
                                                       name=f"{model_name}_{spec.graph_name}", options=spec.options)
            for spec in plan.profile
        }
        for spec in plan.link:
            _target_model(linked[spec.part]).download(str(output_dir / spec.binary_file))
        for path in (scratch / "onnx").iterdir():
            if path.is_file() and path.suffix not in (".onnx", ".data", ".encodings"):
                shutil.copyfile(path, output_dir / path.name)
    tokenizer.save_pretrained(output_dir)
    config = json.loads((output_dir / "config.json").read_text())
    config["edge_llama_export"] = {**config.get("edge_llama_export", {}), "target": "qai-hub", "device": preset.name}
    (output_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metadata = {
        "device": {"name": preset.name, "chipset": preset.chipset, "soc_model": preset.soc_model, "htp_arch": preset.htp_arch},
        "num_parts": config["num_parts"], "context_length": config["context_length"], "ar_lengths": config["ar_lengths"],
        "weight_sharing": True, "int4_as_int8": int4_as_int8,
        "graphs": [{"genie_name": c.graph_name, "part": c.part, "ar_length": c.ar_length,
                    "compile_job": compiled[c.graph_name].job_id,
                    "profile_job": profiles[c.graph_name].job_id if c.graph_name in profiles else None} for c in plan.compile],
        "genie_binaries": [{"file": link.binary_file, "part": link.part, "link_job": linked[link.part].job_id} for link in plan.link],
        "jobs": plan.to_dict(),
    }
    (output_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    write_genie_files(output_dir, preset, [link.binary_file for link in plan.link], True,
                      "the one AI Hub reports on the link job", compiled_by="qai-hub")
    validate_bundle(output_dir)
    return [output_dir / link.binary_file for link in plan.link]


export_qai_hub.preflight = hub_client  # the CLI checks the token before it loads the model


def _target_model(job):
    """The job's result once it has finished, or an error pointing at the job's page."""
    status = job.wait()
    if not status.success:
        raise QaiHubExportError(f"AI Hub job {job.job_id} ({job.name}) failed: {status.message}; see {job.url}")
    return job.get_target_model()
