"""Handwriting: Graves (2013) mixture-density LSTMs for pen strokes.

The domain object is :class:`studio.domains.strokes.StrokesDomain`; this package holds
the rest, one idea per module:

* :mod:`.data`: stroke-3 corpora (the synthetic Hershey corpus, Omniglot), batching;
* :mod:`.model`: the torch prediction and synthesis networks and the mixture loss;
* :mod:`.vrnn`: the torch variational RNN (Chung et al. 2015), the ``vrnn`` head's network;
* :mod:`.mdn`: numpy mixture maths for sampling (bias, draw, log-likelihood);
* :mod:`.sample`: the onnxruntime sampling loop (pieces on a page, stop-at-end, one hand
  per text, styles);
* :mod:`.style_file`: the user's own strokes (SVG, JSON, InkML) fitted to the corpus;
* :mod:`.consistency`: stroke statistics per word and their spread between lines
  (``python -m studio.handwriting.consistency_report`` prints the figure);
* :mod:`.render`: SVG, PNG, animated GIF and the attention plot;
* :mod:`.evaluate`: nats per point on held-out strokes;
* :mod:`.latent`: the variational RNN's onnxruntime sampler and bounds (ELBO, importance-weighted);
* :mod:`.legibility`: an automatic word line-up reader (``python -m studio.handwriting.legibility``).

Only :mod:`.model` and :mod:`.vrnn` import torch.  Training and export go through the one trainer and
exporter (:mod:`studio.train`, :mod:`studio.export`) with the mixture head's torch side in
:mod:`studio.models.mixture`.
"""
