"""Format-exact stand-ins for every pretrained file the suite reads, in a test ``$TORCH_HOME``.

The files carry the exact upstream names and layouts the code (and the upstream libraries) look
for: torchvision's full AlexNet and VGG16 state dicts, torch-fidelity's InceptionV3 state dict, and
compressai's ``mbt2018-mean`` zoo files for q1-5 (the zoo's old key layout, ``_biases.0`` ...).
Their weights are seeded random init, so their sha256 cannot match the hash in their names; they
are registered through the suite's one seam for deliberate re-saves, a ``sha256sum`` listing named
by ``$BENCH_WEIGHT_HASHES`` (:mod:`bench.weight_files`). With both variables set, the files are
"real" to the code: every path a lab with the published files runs is exercised offline.

Writing them (about 1 GB, VGG16 alone 528 MB) takes seconds, so they are written once into
pytest's cache folder, under a key of this file's source and the library versions, and reused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.weight_files import HASHES_ENV, ZOO_FILES

ZOO_QUALITIES = (1, 2, 3, 4, 5)
_LIBRARIES = ("torch", "torchvision", "torch-fidelity", "compressai", "lpips", "DISTS-pytorch")
_SEED = 1234


@dataclass(frozen=True)
class WeightFiles:
    """A ``$TORCH_HOME`` holding the stand-in files and the ``sha256sum`` listing that registers them."""

    torch_home: Path
    hashes: Path

    @property
    def checkpoints(self) -> Path:
        """``$TORCH_HOME/hub/checkpoints``, where the files lie."""
        return self.torch_home / "hub" / "checkpoints"

    def activate(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point ``TORCH_HOME`` and ``BENCH_WEIGHT_HASHES`` (and so child processes) at these files."""
        monkeypatch.setenv("TORCH_HOME", str(self.torch_home))
        monkeypatch.setenv(HASHES_ENV, str(self.hashes))


def _empty_state_file() -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save({}, buffer)
    buffer.seek(0)
    return buffer


def _inception_state() -> dict[str, torch.Tensor]:
    """torch-fidelity's own InceptionV3 module, default-initialised (its constructor insists on loading a file)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[no-untyped-def]
            return nn.Module.load_state_dict(self, state_dict, strict=False, assign=assign)

    net = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=_empty_state_file())
    generator = torch.Generator().manual_seed(0)
    for module in net.modules():  # variance-preserving init: PyTorch's default fades to a constant
        if isinstance(module, nn.Conv2d | nn.Linear):  # feature through 90 layers, which makes FID/KID 0
            fan_in = module.weight[0].numel()
            with torch.no_grad():
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
    return net.state_dict()


# compressai's zoo files predate its ParameterList names: ``entropy_bottleneck._biases.0`` where
# the module now has ``biases.0`` (compressai.zoo.pretrained.rename_key and remap_old_keys undo it).
_ZOO_KEY = re.compile(r"^entropy_bottleneck\.(biases|matrices|factors)\.")


def _zoo_state(quality: int) -> dict[str, torch.Tensor]:
    """A random-init ``mbt2018_mean`` with entropy tables, keyed as compressai's zoo files are."""
    from compressai.zoo import mbt2018_mean

    net = mbt2018_mean(quality, pretrained=False)
    net.update(force=True)
    return {_ZOO_KEY.sub(r"entropy_bottleneck._\1.", key): value for key, value in net.state_dict().items()}


def _states() -> dict[str, object]:
    """File name -> the object torch.save writes, for every upstream file."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import AlexNet_Weights, VGG16_Weights, alexnet, vgg16

    return {
        Path(AlexNet_Weights.IMAGENET1K_V1.url).name: lambda: alexnet().state_dict(),
        Path(VGG16_Weights.IMAGENET1K_V1.url).name: lambda: vgg16().state_dict(),
        Path(URL_INCEPTION_V3).name: _inception_state,
        **{ZOO_FILES[q]: (lambda q=q: _zoo_state(q)) for q in ZOO_QUALITIES},
    }


def _write(folder: Path) -> None:
    """Write every stand-in file under ``folder/torch_home`` and their ``sha256sum`` listing."""
    checkpoints = folder / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    lines = []
    for name, build in _states().items():
        with torch.random.fork_rng():
            torch.manual_seed(_SEED)
            torch.save(build(), checkpoints / name)
        with open(checkpoints / name, "rb") as f:
            lines.append(f"{hashlib.file_digest(f, 'sha256').hexdigest()}  {name}\n")
    (folder / "weight_hashes.txt").write_text("".join(lines))


def cache_key() -> str:
    """Hash of this file and the library versions: a change to either writes the files anew."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for library in _LIBRARIES:
        digest.update(f"{library}={importlib.metadata.version(library)}".encode())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def weight_files(request: pytest.FixtureRequest) -> WeightFiles:
    """The stand-in files, written on the first run into pytest's cache and reused afterwards.

    Written into a private temporary folder and renamed into place, so a concurrent session
    never sees half-written files; folders of an older key (1 GB each) are removed.
    """
    root = Path(request.config.cache.mkdir("weight-files"))
    folder = root / cache_key()
    if not folder.is_dir():
        for stale in root.glob("[0-9a-f]" * 12):
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=root))
        _write(partial)
        try:
            partial.rename(folder)
        except OSError:  # another session finished first: keep its files
            shutil.rmtree(partial, ignore_errors=True)
    return WeightFiles(folder / "torch_home", folder / "weight_hashes.txt")


@pytest.fixture
def real_weights(weight_files: WeightFiles, monkeypatch: pytest.MonkeyPatch) -> WeightFiles:
    """The stand-in files, active in this test's environment (``TORCH_HOME``, ``BENCH_WEIGHT_HASHES``)."""
    weight_files.activate(monkeypatch)
    return weight_files


def register_hashes(monkeypatch: pytest.MonkeyPatch, listing: Path, *files: Path) -> None:
    """Register ``files`` as deliberate re-saves: a ``sha256sum`` listing named by ``$BENCH_WEIGHT_HASHES``."""
    lines = []
    for path in files:
        with open(path, "rb") as f:
            lines.append(f"{hashlib.file_digest(f, 'sha256').hexdigest()}  {path.name}\n")
    listing.write_text("".join(lines))
    monkeypatch.setenv(HASHES_ENV, str(listing))
