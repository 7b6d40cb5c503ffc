"""Sequence Studio: train, export and sample recurrent generative models.

The sampling API is torch-free::

    import studio
    result = studio.sample("prose", prime="ROMEO:", temperature=0.8, seed=1, length=200)
    print(result.text)
"""

from .formats import VERSION as __version__  # noqa: F401  (re-exported)


def __getattr__(name):
    # the public API is imported lazily so ``import studio`` stays cheap and torch-free
    if name in ("sample", "sample_iter", "evaluate", "load_bundle", "SampleSettings"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
