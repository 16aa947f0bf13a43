"""The import graph: the sensor core at the bottom, torch and export above it.

Read statically (every import, also those inside functions), so that a lazy import cannot
hide an arrow that should not be there."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "walloc_edge"
TORCH_SIDE = {"torch", "diffusers", "pywt", "safetensors", "onnx", "onnxscript",
              "litert_torch"}


def imports(path):
    """(walloc_edge sub-packages, top-level third-party modules) that ``path`` imports."""
    tree = ast.parse(path.read_text())
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    ours, theirs = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (ours if alias.name.startswith("walloc_edge") else theirs).add(
                    alias.name.split(".")[1 if alias.name.startswith("walloc_edge.") else 0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level]
                target = (*base, *(node.module or "").split(".")) if node.module else base
                if len(target) > 1:
                    ours.add(target[1])
                else:  # from .. import name: names of the package itself
                    ours.update(a.name for a in node.names)
            elif node.module.startswith("walloc_edge"):
                ours.add(node.module.split(".")[1] if "." in node.module else node.names[0].name)
            else:
                theirs.add(node.module.split(".")[0])
    return ours, theirs


def modules(package):
    return sorted((PACKAGE / package).rglob("*.py"))


def test_the_runtime_imports_no_torch_and_nothing_above_it():
    for path in modules("runtime"):
        ours, theirs = imports(path)
        assert not ours - {"runtime", "__version__"}, (path, ours)
        assert not theirs & TORCH_SIDE, (path, theirs)


def test_the_bridge_stands_on_the_runtime_only():
    for path in modules("firmware_bridge"):
        ours, theirs = imports(path)
        assert ours <= {"runtime", "firmware_bridge"}, (path, ours)
        assert not theirs & TORCH_SIDE, (path, theirs)


def test_the_decoder_stands_on_the_codec_and_the_runtime_only():
    """Never on export: the server side reads bundles and bitstreams, it does not write
    graphs (the bundle's content is the codec's sensor form, codec/sensor.py)."""
    for path in modules("decoder"):
        ours, _ = imports(path)
        assert ours <= {"decoder", "codec", "runtime", "__version__"}, (path, ours)


TORCH_FREE_DECODER = {"bundle", "base", "session", "numeric", "tiles", "errors", "cost"}


def test_the_bundle_decoder_imports_no_torch_even_lazily():
    """A decode server runs a bundle's decoder graph where torch is not installed
    (walloc-edge[decode]): decoder/bundle.py and all it imports of the decoder stand on the
    runtime and numpy, and import nothing torch-side, not even inside a function."""
    for name in sorted(TORCH_FREE_DECODER):
        path = PACKAGE / "decoder" / f"{name}.py"
        ours, theirs = imports(path)
        assert ours <= {"decoder", "runtime"}, (path, ours)
        assert not theirs & TORCH_SIDE, (path, theirs)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module in TORCH_FREE_DECODER, (path, node.module)


def test_evaluation_stands_on_the_decoder_the_codec_and_the_runtime_only():
    for path in modules("evaluation"):
        ours, _ = imports(path)
        assert ours <= {"evaluation", "decoder", "codec", "runtime"}, (path, ours)


def test_the_server_stands_below_the_cli_and_loads_without_torch():
    """What serve does per message is library code on the bridge, the runtime, the decoder
    and learning; torch only where it decodes or classifies (a server keeping a bundle's
    latents runs without it), so nothing torch-side is imported at module level."""
    for path in modules("server"):
        ours, theirs = imports(path)
        assert ours <= {"server", "firmware_bridge", "runtime", "decoder", "codec",
                        "learning"}, (path, ours)
        top_level = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                top_level.add((node.module or "").split(".")[0])
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                assert not imports_torch(node), (path, ast.dump(node))
        assert not top_level & {"codec", "decoder", "learning", "export"}, (path, top_level)


def imports_torch(node):
    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
    return any(name.split(".")[0] in TORCH_SIDE for name in names)


def test_the_learning_side_does_not_stand_on_export():
    for path in modules("learning"):
        ours, _ = imports(path)
        assert "export" not in ours and "cli" not in ours, (path, ours)


MODALITY_NAMES = {"image", "audio"}


def _is_modality_name(node):
    """The string "image" or "audio", or a tuple, list or set of constants holding one."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_is_modality_name(e) for e in node.elts)
    return isinstance(node, ast.Constant) and node.value in MODALITY_NAMES


def _is_name_of_modality(node):
    """``X.name`` where X is a Modality: IMAGE, AUDIO, a ``modality`` or a ``kind``."""
    if not (isinstance(node, ast.Attribute) and node.attr == "name"):
        return False
    owner = node.value
    last = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return last in {"IMAGE", "AUDIO", "kind"} or "modality" in last.lower()


def test_images_and_audio_differ_in_one_place():
    """Code asks a Modality (runtime/modality.py) what differs between images and audio:
    nothing else compares with a modality's name."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "runtime" / "modality.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            sides = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
            if any(_is_modality_name(n) or _is_name_of_modality(n) for n in sides):
                found.append((path.relative_to(PACKAGE.parent), node.lineno, ast.unparse(node)))
    assert not found, "compares with a modality's name (ask the Modality instead):\n" + \
        "\n".join(f"{path}:{line}: {code}" for path, line, code in sorted(found))


def test_datasets_stand_on_the_runtime_without_torch():
    """Latents datasets are made by the sensor runtime (a bundle suffices: no torch)."""
    ours, theirs = imports(PACKAGE / "learning" / "datasets.py")
    assert ours <= {"runtime"}, ours
    assert not theirs & TORCH_SIDE, theirs


def test_sensor_commands_import_no_torch_side():
    for name in ("encode", "stream", "info", "models", "bench", "dataset", "serve", "_shared",
                 "__init__"):
        ours, theirs = imports(PACKAGE / "cli" / f"{name}.py")
        top = ast.parse((PACKAGE / "cli" / f"{name}.py").read_text()).body
        top_level = set()
        for node in top:  # the module-level imports (a lazy one runs only when needed)
            if isinstance(node, ast.ImportFrom) and node.level:
                top_level.add((node.module or "").split(".")[0])
        assert not top_level & {"codec", "export", "decoder"}, (name, top_level)
        assert not theirs & TORCH_SIDE, (name, theirs)


def test_nothing_imports_the_cli():
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        assert "cli" not in imports(path)[0], path


def test_coder_wire_ids_are_unique_and_stable():
    from walloc_edge.runtime.coders import CODER_IDS, CODERS, registry

    assert CODER_IDS == {"rans": 1, "webp": 3, "png": 2, "raw": 0}  # written in files: fixed
    assert all(CODERS[name].wire_id == i for name, i in CODER_IDS.items())
    import pytest
    from walloc_edge.runtime.coders.raw import RawCoder

    with pytest.raises(RuntimeError, match="clashes"):
        registry(("a", 0, RawCoder()), ("b", 0, RawCoder()))


PUBLIC = ["walloc_edge.runtime", "walloc_edge.runtime.coders", "walloc_edge.codec",
          "walloc_edge.decoder", "walloc_edge.export", "walloc_edge.zoo", "walloc_edge.data",
          "walloc_edge.server"]


def test_the_public_api_is_typed():
    """Every function and public method a package exports has annotated parameters and a
    return annotation (the package ships py.typed)."""
    import importlib
    import inspect

    untyped = []
    for name in PUBLIC:
        package = importlib.import_module(name)
        for export in package.__all__:
            obj = getattr(package, export)
            if inspect.isfunction(obj):
                functions = [(export, obj)]
            elif inspect.isclass(obj):
                functions = [(f"{export}.{k}", v) for k, v in vars(obj).items()
                             if inspect.isfunction(v) and (k == "__init__" or k[0] != "_")]
            else:
                continue
            for label, f in functions:
                f = inspect.unwrap(f)
                sig = inspect.signature(f)
                bare = [p.name for p in sig.parameters.values()
                        if p.name not in ("self", "cls") and p.annotation is p.empty]
                if bare or (sig.return_annotation is sig.empty and not label.endswith("__init__")):
                    untyped.append(f"{name}.{label}")
    assert not untyped, untyped
    assert (PACKAGE / "py.typed").is_file()


def test_tests_share_helpers_and_use_public_names():
    """A helper that several test files need lives in tests/helpers.py or conftest.py, not in
    one test file that the others import; tests import no private name of the package
    (``_name`` or a ``_module``), which is free to change without a test knowing."""
    tests = Path(__file__).resolve().parent
    wrong = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                found = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for module, name in found:
                parts = module.split(".")
                private = [p for p in parts[1:] + [name or ""]
                           if p.startswith("_") and not p.startswith("__")]
                if parts[0].startswith("test_") or parts[0] == "conftest":
                    wrong.append(f"{path.name}:{node.lineno} imports the test module {module}")
                elif parts[0] == "walloc_edge" and private:
                    what = f"{module}.{name}" if name else module
                    wrong.append(f"{path.name}:{node.lineno} imports {what}: private "
                                 f"{', '.join(private)}")
    assert not wrong, wrong


def test_no_module_is_over_400_lines():
    """A module that outgrows this holds more than one room's work: split it."""
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these modules: {long}"


def module_imports(path, name):
    """walloc_edge modules ``path`` (module ``name``) imports anywhere in it: a name imported
    from a package counts as its submodule where there is one."""
    modules = module_names()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                         for a in node.names)
    return {m for m in found if m in modules and m != name}


def module_names():
    """{dotted name: path} of every module of the package."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def test_no_import_cycle_between_modules():
    """Every module can be read after the ones it imports (lazy imports included): a cycle
    means two modules that are one room, or a fact in the wrong one."""
    graph = {name: module_imports(path, name) for name, path in module_names().items()}
    done, on_path = set(), []

    def visit(name):
        if name in on_path:
            return on_path[on_path.index(name):] + [name]
        if name in done:
            return None
        on_path.append(name)
        for other in sorted(graph[name]):
            cycle = visit(other)
            if cycle:
                return cycle
        on_path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name)
        assert cycle is None, "import cycle: " + " -> ".join(cycle)
