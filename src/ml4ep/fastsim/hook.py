"""A Geant4-style fast-simulation hook for an exported shower model, as plain C++ (no Geant4 needed).

>>> from ml4ep.fastsim.hook import export_cpp
>>> export_cpp("runs/flow/denoiser.onnx", "cpp")                                  # doctest: +SKIP

:func:`export_cpp` compiles the exported graphs with ``ml4ep.infer`` (the VAE's ``decoder.onnx``, or the flow model's
``denoiser.onnx`` and ``postprocess.onnx``) into one folder, each as ``<name>.hpp`` / ``<name>.bin`` (a second model's
example program as ``<name>_example.cpp``), and writes beside them:

* ``shower_hook.hpp``: ``ml4ep_fastsim::ShowerGenerator``, which owns the compiled model(s), a ``std::mt19937_64`` and
  a ``std::normal_distribution``. ``generate(energies_mev, [conds,] n, showers_out)`` draws the noise and makes ``n``
  showers; ``generate_with_noise(noise, energies_mev, [conds,] n, showers_out)`` takes given noise. ``conds`` (``n x
  kConditions`` floats) only for a model trained with extra conditions. The VAE decodes latent noise ``(n, kLatent)``;
  the flow model integrates ``dx/dt = v`` from ``x ~ N(0, 1)`` ``(n, kNoise)`` (its state) with the sampler loop of
  :func:`ml4ep.fastsim.models.diffusion.integrate` (euler, midpoint or heun; network evaluations and sampler stored
  with the model, changed by ``set_sampler``), then runs the postprocessing model. Buffers are members grown on
  demand, so calls allocate nothing once the largest ``n`` was seen: the shape of a
  ``G4VFastSimulationModel::DoIt`` that calls it once per particle.
* ``hook_main.cpp``: a driver. ``shower_hook [--weights F] [--seed S] [--z F] [--cond F] [--out F] [E_GeV ...]``
  (the flow model also ``--post-weights F --steps K --sampler NAME``) generates one shower per incident energy (GeV;
  default 1 10 100), prints each shower's deposited energy and number of hit voxels, and writes the showers as raw
  float32 ``(N, n_voxels)`` to ``--out``. ``--z`` reads the noise as raw float32 ``(N, noise)`` instead of drawing
  it (for comparing with the Python backends); ``--cond`` the conditions as raw float32 ``(N, k)``.
* a ``shower_hook`` target appended to ``CMakeLists.txt`` (between marker lines, replaced when written again;
  a standalone ``CMakeLists.txt`` is written where there is none).

The fixed text is in template files of this package, ``ml4ep/fastsim/cpp/``: ``shower_hook_head.hpp`` then
``shower_hook_vae.hpp`` or ``shower_hook_flow.hpp`` (``shower_hook.hpp``), ``hook_main.cpp`` with the flow model's
snippets of ``hook_main_flow.cpp``, and the CMake parts ``project.cmake``, ``hook_target.cmake`` and
``model_example.cmake``; they are filled by :mod:`ml4ep._native.template` (every placeholder and no other), and the
model names they receive must be C++ identifiers as :func:`ml4ep._native.names.identifier` makes them.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from .._native import template
from .._native.names import identifier, printf_text
from ..errors import Ml4epError
from .sampler import MAX_STEPS, DiffusionConfigError
from .sampler import check_sampler as _check_sampler

log = logging.getLogger(__name__)

CMAKE_BEGIN = "# >>> ml4ep.fastsim shower_hook >>>"
CMAKE_END = "# <<< ml4ep.fastsim shower_hook <<<"


class HookError(Ml4epError, ValueError):
    """Invalid hook-example arguments."""


def _render(name: str, **subs) -> str:
    """The template ``cpp/<name>`` of this package, filled (:func:`ml4ep._native.template.render`: strict)."""
    return template.render("ml4ep.fastsim", f"cpp/{name}", **subs)


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HookError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HookError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def _identifier(name, what: str) -> str:
    """``name`` if it is its own C++ identifier (:func:`ml4ep._native.names.identifier`, as ml4ep.infer names the
    namespace of a compiled model: ``[A-Za-z0-9_]``, no leading digit or underscore, no keyword), else a
    :class:`HookError`."""
    if not isinstance(name, str) or identifier(name, unique=False) != name:
        hint = f"; e.g. {identifier(name, unique=False)!r}" if isinstance(name, str) else ""
        raise HookError(f"{what} must be a C++ identifier (the namespace of <name>.hpp), got {name!r}{hint}")
    return name


def check_sampler(sampler, steps) -> None:
    """A :class:`HookError` unless ``sampler`` with ``steps`` network evaluations is valid
    (:func:`ml4ep.fastsim.sampler.check_sampler`)."""
    try:
        _check_sampler(sampler, steps)
    except DiffusionConfigError as exc:
        raise HookError(str(exc)) from None


def _cmake_block(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with the block between ``begin`` and ``end`` replaced by ``block`` (appended when absent)."""
    text = re.sub(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", "", text, flags=re.S)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + block


def _write_cmake(out: Path, project: str) -> Path:
    cmake = out / "CMakeLists.txt"
    text = cmake.read_text() if cmake.exists() else _render("project.cmake", NAME=project)
    cmake.write_text(_cmake_block(text, CMAKE_BEGIN, CMAKE_END,
                                  _render("hook_target.cmake", BEGIN=CMAKE_BEGIN, END=CMAKE_END)))
    return cmake


def _cond_subs(n_conditions: int) -> dict:
    if n_conditions:
        return dict(NCOND=n_conditions, CPARAM="const float* conds, ", CARG="conds, ",
                    CDOC=f"; conds: n * {n_conditions} extra condition values")
    return dict(NCOND=0, CPARAM="", CARG="", CDOC="")


def _main_text(what: str, weights: str, noise: int, n_voxels: int, n_conditions: int, condition_names: str,
               flow_post: str | None) -> str:
    usage = "[--weights F.bin] "
    if flow_post:
        usage += "[--post-weights F.bin] [--steps K] [--sampler euler|midpoint|heun] "
    usage += "[--seed S] [--z noise.f32] " + ("--cond conds.f32 " if n_conditions else "") + \
        "[--out showers.f32] [E_GeV ...]"
    subs = dict(WHAT=what, USAGE=usage, NOISE=noise, NCOND=n_conditions, VOXELS=n_voxels, WEIGHTS=f"{weights}.bin",
                CNAMES=printf_text(condition_names or "see the model"), CARG="c, " if n_conditions else "",
                COND_PTR="      const float* c = conds.data() + i * nc;\n" if n_conditions else "")
    if flow_post:
        flow = template.sections(template.load("ml4ep.fastsim", "cpp/hook_main_flow.cpp"), "hook_main_flow.cpp")
        subs.update(FLOW_DECL=template.fill(flow["FLOW_DECL"], what="FLOW_DECL", POST=flow_post),
                    FLOW_OPTS=flow["FLOW_OPTS"].removesuffix("\n"),  # continues a line of hook_main.cpp
                    FLOW_PARSE=flow["FLOW_PARSE"], FLOW_SET=flow["FLOW_SET"], CTOR="weights, post_weights, seed")
    else:
        subs.update(FLOW_DECL="", FLOW_OPTS="", FLOW_PARSE="", FLOW_SET="", CTOR="weights, seed")
    return _render("hook_main.cpp", **subs)


def write_hook_example(cpp_dir, model_name: str, latent: int, n_voxels: int, *, n_conditions: int = 0,
                       condition_names=()) -> dict[str, Path]:
    """Write the VAE hook: ``shower_hook.hpp`` and ``hook_main.cpp`` into ``cpp_dir`` (where ``<model_name>.hpp``
    lives) and a ``shower_hook`` target into its ``CMakeLists.txt``; returns ``{"header", "main", "cmake"}`` paths.
    ``n_conditions``: the decoder's extra ``cond`` columns (0: none)."""
    model_name = _identifier(model_name, "model_name")
    latent = _positive_int(latent, "latent")
    n_voxels = _positive_int(n_voxels, "n_voxels")
    n_conditions = _count(n_conditions, "n_conditions")
    out = Path(cpp_dir)
    out.mkdir(parents=True, exist_ok=True)
    subs = dict(NAME=model_name, LATENT=latent, VOXELS=n_voxels, **_cond_subs(n_conditions))
    header = out / "shower_hook.hpp"
    main = out / "hook_main.cpp"
    head = _render("shower_hook_head.hpp", WHAT=f"decoder '{model_name}'", INCLUDES=f'#include "{model_name}.hpp"\n')
    header.write_text(head + "\n" + _render("shower_hook_vae.hpp", **subs))
    main.write_text(_main_text(f"the decoder '{model_name}'", model_name, latent, n_voxels, n_conditions,
                               ",".join(condition_names), None))
    cmake = _write_cmake(out, model_name)
    return {"header": header, "main": main, "cmake": cmake}


def write_flow_hook_example(cpp_dir, denoiser_name: str, postprocess_name: str, n_voxels: int, *, steps: int = 20,
                            sampler: str = "midpoint", n_conditions: int = 0, condition_names=(),
                            state_size: int | None = None) -> dict[str, Path]:
    """Write the flow-model hook: ``shower_hook.hpp`` (the sampler loop around ``<denoiser_name>.hpp``, then
    ``<postprocess_name>.hpp``) and ``hook_main.cpp`` into ``cpp_dir`` and a ``shower_hook`` target into its
    ``CMakeLists.txt``; ``steps``/``sampler`` are the defaults of the generator, ``state_size`` the floats of the
    flow's state per shower (default ``n_voxels``). Returns ``{"header", "main", "cmake"}`` paths."""
    denoiser_name = _identifier(denoiser_name, "denoiser_name")
    postprocess_name = _identifier(postprocess_name, "postprocess_name")
    if denoiser_name == postprocess_name:
        raise HookError(f"the denoiser and the postprocessing model need distinct names, both are {denoiser_name!r}")
    n_voxels = _positive_int(n_voxels, "n_voxels")
    state_size = n_voxels if state_size is None else _positive_int(state_size, "state_size")
    n_conditions = _count(n_conditions, "n_conditions")
    check_sampler(sampler, steps)
    out = Path(cpp_dir)
    out.mkdir(parents=True, exist_ok=True)
    subs = dict(DENOISER=denoiser_name, POST=postprocess_name, VOXELS=n_voxels, STATE=state_size, STEPS=steps,
                SAMPLER=sampler,
                MAXSTEPS=MAX_STEPS, **_cond_subs(n_conditions))
    header = out / "shower_hook.hpp"
    main = out / "hook_main.cpp"
    head = _render("shower_hook_head.hpp", WHAT=f"flow model '{denoiser_name}' + '{postprocess_name}'",
                 INCLUDES=f'#include "{denoiser_name}.hpp"\n#include "{postprocess_name}.hpp"\n')
    header.write_text(head + "\n" + _render("shower_hook_flow.hpp", **subs))
    main.write_text(_main_text(f"the flow model '{denoiser_name}' + '{postprocess_name}'", denoiser_name, state_size,
                               n_voxels, n_conditions, ",".join(condition_names), postprocess_name))
    cmake = _write_cmake(out, denoiser_name)
    return {"header": header, "main": main, "cmake": cmake}


def save_models(cpp_dir, models) -> Path:
    """Save compiled ``ml4ep.infer`` models into one folder without clashes: the first with its ``save`` (header,
    weights, ``example.cpp``, ``CMakeLists.txt``), each further one as ``<name>.hpp``, ``<name>.bin`` and
    ``<name>_example.cpp`` with an ``<name>_example`` target added to the ``CMakeLists.txt``."""
    models = list(models)
    if not models:
        raise HookError("no compiled models to save")
    names = [getattr(m, "name", None) for m in models]
    for m, name in zip(models, names):
        if not hasattr(m, "directory") or not hasattr(m, "save"):
            raise HookError(f"model {name!r} is not a compiled ml4ep.infer model (fix its shape inputs with "
                            "constants= to get one)")
    if len(set(names)) != len(names):
        raise HookError(f"compiled models need distinct names to share a folder, got {names}")
    out = Path(models[0].save(cpp_dir))
    cmake = out / "CMakeLists.txt"
    for m in models[1:]:
        src = Path(m.directory)
        shutil.copyfile(src / f"{m.name}.hpp", out / f"{m.name}.hpp")
        shutil.copyfile(src / f"{m.name}.bin", out / f"{m.name}.bin")
        shutil.copyfile(src / "example.cpp", out / f"{m.name}_example.cpp")
        begin, end = f"# >>> ml4ep model {m.name} >>>", f"# <<< ml4ep model {m.name} <<<"
        block = _render("model_example.cmake", BEGIN=begin, END=end, NAME=m.name)
        cmake.write_text(_cmake_block(cmake.read_text(), begin, end, block))
    return out


def _onnx_meta(path: Path) -> tuple[dict[str, list[int]], dict]:
    """``({input: its dims (0 where symbolic)}, metadata)`` of an ONNX file."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise HookError(f"{path}: not a readable ONNX file ({exc})") from None
    inputs = {i.name: [int(d.dim_value) for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    return inputs, {p.key: p.value for p in proto.metadata_props}


def _check_io(compiled, path: Path, inputs: list[str], outputs: list[str]) -> None:
    if list(compiled.input_names) != inputs or list(compiled.output_names) != outputs:
        raise HookError(f"{path}: the compiled model takes {compiled.input_names} -> {compiled.output_names}, "
                        f"the hook needs {inputs} -> {outputs}")
    if len(compiled.symbols) != 1:
        raise HookError(f"{path}: the compiled model has the dimensions {compiled.symbols}; the hook needs one, the "
                        "batch size")


def _int_meta(meta: dict, key: str, path: Path) -> int:
    try:
        return int(meta[key])
    except (KeyError, ValueError):
        raise HookError(f"{path}: metadata '{key}' missing or not an integer (export it with "
                        "ml4ep.fastsim.generate.export)") from None


def export_cpp(onnx_path, cpp_dir, *, steps: int | None = None, sampler: str | None = None,
               march: str | None = None) -> dict:
    """Compile an exported fastsim graph with ``ml4ep.infer`` into ``cpp_dir`` and write the hook beside it.

    ``onnx_path``: a VAE's ``decoder.onnx`` or a flow model's ``denoiser.onnx`` (its ``postprocess.onnx``, named in
    its metadata, is compiled too). ``steps``/``sampler``: the flow generator's defaults (otherwise those stored
    with the model). ``march``: the target ISA of the compiled models (default ``$ML4EP_MARCH``, else native).
    Returns ``{"kind", "dir", "models" (C++ names), "header", "main", "cmake"}``.
    """
    import ml4ep.infer as mi

    path = Path(onnx_path)
    if not path.is_file():
        raise HookError(f"{path}: file not found")
    inputs, meta = _onnx_meta(path)
    conds = [c for c in meta.get("conditions", "").split(",") if c]
    n_cond = 0
    if "cond" in inputs:
        shape = inputs["cond"]
        if len(shape) != 2 or shape[1] < 1:
            raise HookError(f"{path}: input 'cond' must have the static shape (N, k), got {shape}")
        n_cond = shape[1]
    kind = meta.get("ml4ep.model")
    if kind == "fastsim.vae":
        if steps is not None or sampler is not None:
            raise HookError(f"{path}: steps and sampler apply to the flow model, not a VAE decoder")
        latent, n_voxels = _int_meta(meta, "latent", path), _int_meta(meta, "n_voxels", path)
        compiled = mi.compile(str(path), march=march)
        _check_io(compiled, path, ["z", "incident_energy"] + (["cond"] if n_cond else []), ["showers"])
        out = save_models(cpp_dir, [compiled])
        paths = write_hook_example(out, compiled.name, latent, n_voxels, n_conditions=n_cond, condition_names=conds)
        models = [compiled.name]
    elif kind == "fastsim.diffusion":
        n_voxels = _int_meta(meta, "n_voxels", path)
        state = _int_meta(meta, "state_size", path) if "state_size" in meta else n_voxels
        steps = _int_meta(meta, "steps", path) if steps is None else steps
        sampler = meta.get("sampler", "midpoint") if sampler is None else sampler
        check_sampler(sampler, steps)
        post_path = path.with_name(meta.get("postprocess", "postprocess.onnx"))
        if not post_path.is_file():
            raise HookError(f"{path}: its postprocessing graph {post_path} is missing (export again)")
        den = mi.compile(str(path), march=march)
        post = mi.compile(str(post_path), march=march)
        if post.name == den.name:  # e.g. denoiser 'a-b.onnx' and postprocessing 'a_b.onnx'
            post = mi.compile(str(post_path), name=f"{den.name}_post", march=march)
        _check_io(den, path, ["x", "t", "incident_energy"] + (["cond"] if n_cond else []), ["v"])
        _check_io(post, post_path, ["x", "incident_energy"], ["showers"])
        out = save_models(cpp_dir, [den, post])
        paths = write_flow_hook_example(out, den.name, post.name, n_voxels, steps=steps, sampler=sampler,
                                        n_conditions=n_cond, condition_names=conds, state_size=state)
        models = [den.name, post.name]
    else:
        raise HookError(f"{path}: not an exported fastsim VAE decoder or flow denoiser (metadata ml4ep.model = "
                        f"{kind!r}; export it with ml4ep.fastsim.generate.export)")
    log.info("C++ hook of %s (%s) written to %s", path, ", ".join(models), out)
    return {"kind": "vae" if kind == "fastsim.vae" else "diffusion", "dir": out, "models": models, **paths}
