"""Training the EfficientNet-B0 face encoder (PyTorch Lightning + pytorch-metric-learning).

face_cache (detect + align once) -> data (split, augmentation, PK batches, validation pairs) ->
module (stage 1 classification, stage 2 contrastive / triplet / pair classifier, distillation) ->
runner (Lightning Trainer from a recipe in config/train/) -> export (deploy checkpoint + threshold).
Entry point: ``face-recognition-ros train --config FILE`` (cli.add_train_parser / cli.run_train).
"""
