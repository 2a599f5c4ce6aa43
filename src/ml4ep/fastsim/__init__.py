"""ml4ep.fastsim: fast calorimeter simulation in the CaloChallenge format (docs/fastsim.md).

>>> from ml4ep.fastsim import geometry, io, gflash, features, metrics
>>> geo = geometry.get("ds2")                                  # ds1-photons, ds1-pions, ds2, ds3 or a binning file
>>> e, s = gflash.simulate(geo, 1000, energy=(1, 1000), seed=1)  # parameterised showers, MeV
>>> io.write("showers.h5", e, s, geometry=geo)                 # CaloChallenge HDF5
>>> from ml4ep.fastsim.evaluate import evaluate                # every CaloChallenge metric, with plots

The modules by role (only :mod:`.geometry` is imported with the package; the others on use, most of them needing
the ``fastsim`` extra, the models and training also PyTorch):

Data: showers and the calorimeters they live in
    ``geometry.py``  voxel binnings (:class:`Geometry`, :func:`get`), from ``binnings.json`` (the four challenge
    binnings, package data) or a JSON/YAML file of one's own;
    ``io.py``        CaloChallenge HDF5 files: read, write, stream in chunks, validate;
    ``gflash.py``    the parameterised (GFlash-type) shower generator, not Geant4: training and reference samples.

Evaluation: a generated sample against a reference sample
    ``features.py``  high-level features, classifier inputs, histograms and separation powers;
    ``metrics.py``   FPD, KPD and the classifier metric (AUC, JSD);
    ``evaluate.py``  ``ml4ep fastsim evaluate``: every metric over both samples streamed in chunks, ``metrics.json``;
    ``report.py``    its plots and ``index.html``.

Learning: the generative models and their training
    ``models/``      ``vae.py`` (Par04-style conditional VAE), ``diffusion.py`` (CaloDiT-style flow-matching
    transformer), ``conditioning.py`` (the incident-energy and extra conditions they share), ``guard.py`` (the
    energy guard they share: no shower above the training data's energy bounds at its incident energy);
    ``train.py``     one training loop for both, through :class:`ml4ep.data.BatchLoader`, with checkpoints and resume;
    ``adapt.py``     fine-tuning a pretrained model to another calorimeter, against training from scratch;
    ``sampler.py``   the flow model's ODE sampler (Euler, midpoint, Heun), torch-free: the one loop that the model's
    own ``sample``, every generation backend and (repeated in C++) the hook share.

Deployment: showers from a trained model, in Python and in C++
    ``generate.py``  export to ONNX; generation with PyTorch, ONNX Runtime or the model compiled by ml4ep.infer;
    ``pretrained.py`` the shipped models (``ds2-default``; package data ``pretrained/``), usable without torch;
    ``hook.py``      the Geant4-style fast-simulation hook: the compiled models and ``shower_hook.hpp`` (no
    allocation per call), an example program and a CMake target;
    ``cpp/``         the hook's fixed C++ and CMake text, template files filled by :mod:`ml4ep._native.template`.

Orchestration
    ``pipeline.py``  the whole chain on parameterised showers: simulate, train both models, export, compile and
    run the hook, generate, evaluate, ``report.md`` (what ``make demo`` runs);
    ``cli.py``       ``ml4ep fastsim simulate | train | generate | export | evaluate``, registered by :mod:`ml4ep.cli`.
"""

from __future__ import annotations

from .geometry import BUILTIN, Geometry, GeometryError, Layer, get

__all__ = ["BUILTIN", "Geometry", "GeometryError", "Layer", "get"]
