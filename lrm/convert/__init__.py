"""Converters from published checkpoint layouts to ours, strictly (every key accounted for).

    encoder.py   DINOv2 (Meta, Hugging Face) and HF ViT (4.x / 5.x names) -> our ImageEncoder
    openlrm.py   OpenLRM v1.1 config.json + state dict -> LRMConfig + our state dict
    triposr.py   TripoSR config.yaml + state dict -> LRMConfig + our state dict
    reader.py    StateReader (collects missing / mis-shaped / unexpected keys) and safe file reading
"""
