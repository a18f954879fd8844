"""The deep sequential model: SASRec in torch, training, ONNX export, parity, model store.

Import submodules directly. ``streamrec.export.serving``, ``streamrec.export.store``, ``streamrec.export.parity`` and
``streamrec.export.vocab`` never import torch, so a scorer needs only ONNX Runtime and numpy; the
training side (``model``, ``train``, ``onnx_export``) needs the ``train`` extra.
"""
