"""`lrm train`: the trainer, one component per file.

    config.py       TrainConfig dataclasses; TOML in, resolved JSON out
    data.py         objects -> training samples (views, pose normalisation, crops, backgrounds)
    synthetic.py    tiny analytic datasets for tests, benchmarks and smoke runs
    losses.py       MSE, TV, mask, PSNR; LPIPS lives in lrm.losses.lpips
    optim.py        AdamW decay groups, warm-up + cosine schedule
    checkpoint.py   atomic, verified, keep-K checkpoints
    encoder_init.py DINO/DINOv2 weights for a new model's encoder
    validate.py     validation PSNR and image grid
    logger.py       metrics.jsonl + TensorBoard
    loop.py         train(cfg): the loop on accelerate
"""
