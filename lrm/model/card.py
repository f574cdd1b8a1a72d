"""The model card (`README.md` with a YAML header) written beside every saved model folder, so
the Hugging Face hub and other tools see its licence and how to load it."""

from __future__ import annotations

from pathlib import Path

CARD_NAME = "README.md"
# licence strings our configs carry -> the hub's identifiers
HUB_LICENSES = {"CC-BY-NC-4.0": "cc-by-nc-4.0", "CC-BY-SA-4.0": "cc-by-sa-4.0", "MIT": "mit",
                "Apache-2.0": "apache-2.0", "CC-BY-4.0": "cc-by-4.0", "CC0-1.0": "cc0-1.0"}


def model_card(cfg) -> str:
    """cfg: an LRMConfig -> the card's text."""
    lic = HUB_LICENSES.get(cfg.license, "other")
    header = ["---", f"license: {lic}"] + ([f"license_name: {cfg.license or 'unknown'}"] if lic == "other" else [])
    header += ["library_name: lrm", "pipeline_tag: image-to-3d", "tags:", "- lrm", "- image-to-3d", "---", ""]
    enc, tr = cfg.encoder, cfg.transformer
    body = [
        f"# {cfg.name}", "",
        "A Large Reconstruction Model (image → triplane NeRF → mesh) in lrm's folder layout:",
        "`config.json` (the architecture, validated on load) and `model.safetensors`.", "",
        f"- encoder: ViT, {enc.depth} blocks of width {enc.dim}, patch {enc.patch_size}",
        f"- triplane transformer: {tr.layers} `{tr.block}` blocks of width {tr.dim}, "
        f"{3 * tr.token_res ** 2} tokens",
        f"- field: {cfg.field.layers}-layer MLP on {cfg.field.channels}-channel planes",
    ] + ([f"- lift: image features at {cfg.lift.samples} points along each texel's input-camera ray"]
         if cfg.lift.samples else []) + [
        f"- licence of the weights: {cfg.license or 'not recorded'}", "",
        "```bash",
        "lrm reconstruct photo.png -o out/ --model PATH_TO_THIS_FOLDER",
        "```", "",
    ]
    return "\n".join(header + body)


def write_card(folder: str | Path, cfg) -> None:
    """Write the card unless the folder already has a README.md (a hand-written card is kept)."""
    path = Path(folder) / CARD_NAME
    if not path.exists():
        path.write_text(model_card(cfg))
