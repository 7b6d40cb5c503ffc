"""Handwriting: Graves (2013) mixture-density LSTMs for pen strokes.

The domain object is :class:`studio.domains.strokes.StrokesDomain`; this package holds
the rest, one idea per module:

* :mod:`.data`: stroke-3 corpora (the synthetic Hershey corpus, Omniglot), batching;
* :mod:`.model`: the torch prediction and synthesis networks and the mixture loss;
* :mod:`.train`: the training loop (``python -m studio.handwriting.train``);
* :mod:`.export`: ONNX step graphs with named state, parity-checked, and the card;
* :mod:`.mdn`: numpy mixture maths for sampling (bias, draw, log-likelihood);
* :mod:`.sample`: the onnxruntime sampling loop (wrapping, stop-at-end, styles);
* :mod:`.render`: SVG, PNG, animated GIF and the attention plot;
* :mod:`.evaluate`: nats per point on held-out strokes;
* :mod:`.legibility`: an automatic word line-up reader (``python -m studio.handwriting.legibility``).

Only :mod:`.model`, :mod:`.train` and :mod:`.export` import torch.
"""
