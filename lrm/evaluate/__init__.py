"""`lrm evaluate`: single-image 3D metrics with pictures (protocol: docs/evaluation.md).

    image_metrics  PSNR, SSIM, LPIPS (optional)         geometry   sampling, Chamfer, F-score, volume IoU
    align          unit-bbox normalisation, rotation     predictors what is evaluated: ModelPredictor
                   search + ICP                          baselines  the sphere baseline
    runner         the loop: evaluate(...)               (mesh views: lrm.mesh.view_render)
    report         metrics.json, summary.md, meshes      sheet      contact sheets
    compare        two reports side by side
"""
