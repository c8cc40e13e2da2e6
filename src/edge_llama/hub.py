"""`push_to_hub` of a quantized model: the saved folder, model card included, as one commit."""

from __future__ import annotations

import tempfile
from pathlib import Path


def push_quantized_to_hub(
    model,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    tags: list[str] | None = None,
):
    """Saves `model` (quantized) into a temporary folder and uploads it to `repo_id`; returns the commit.

    transformers' own `push_to_hub` would replace the model card with its generic one (library
    `transformers`, no recipe): this keeps edge-llama's, adding `tags` to its metadata.
    """
    from huggingface_hub import HfApi, ModelCard

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory(prefix="edge_llama_push_") as scratch:
        folder = Path(scratch) / "model"
        model.save_pretrained(folder)
        if tags:
            card = ModelCard.load(folder / "README.md")
            card.data.tags = [*(card.data.tags or []), *(tag for tag in tags if tag not in (card.data.tags or []))]
            card.save(folder / "README.md")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or f"Upload {model.quantization.recipe.name} edge-llama model",
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )
