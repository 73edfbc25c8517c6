"""Tiny fake data sets in the exact on-disk formats of the published ones (for tests).

Each ``make_*`` function writes a handful of files under ``root`` and returns what a
test needs to build its expectations. Images use flat colour blocks aligned to 16 pixels
so that JPEG compression leaves the pure colours intact (pure blue stays (0, 0, 254)).
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import socket
import struct
import tarfile
import threading
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

BLUE = (0, 0, 254)  # Flowers' background colour
FLOWER = (200, 120, 60)  # no channel is 0 and blue is not 254: foreground for every rule


def block_mask(width: int, height: int, box: Tuple[int, int, int, int]) -> np.ndarray:
    """Boolean (H, W) array, True inside ``box = (left, top, right, bottom)``."""
    mask = np.zeros((height, width), dtype=bool)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = True
    return mask


def paint(mask: np.ndarray, fg: Sequence[int], bg: Sequence[int]) -> np.ndarray:
    """(H, W, 3) uint8 image: ``fg`` where ``mask``, ``bg`` elsewhere."""
    return np.where(mask[..., None], np.array(fg, np.uint8), np.array(bg, np.uint8)).astype(np.uint8)


def save_jpeg(array: np.ndarray, path: Path, mode: Optional[str] = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    image.save(path, "JPEG", quality=100, subsampling=0)


def gradient_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB image whose pixels differ (to check geometry against torchvision)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1)
    return (base + rng.integers(0, 3, base.shape)).clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ Flowers
def make_flowers(
    root: Path,
    splits: Optional[Dict[str, List[int]]] = None,
    size: Tuple[int, int] = (96, 48),
    box: Tuple[int, int, int, int] = (32, 16, 64, 48),
) -> Dict[str, List[int]]:
    """``setid.mat`` + ``jpg/image_%05d.jpg`` + ``segmim/segmim_%05d.jpg``.

    ``splits`` maps the setid keys (``trnid``, ``valid``, ``tstid``) to 1-based ids. Every
    segmentation is blue except the ``box`` (the flower).
    """
    from scipy import io as scipy_io

    splits = splits or {"trnid": [1, 2], "valid": [3], "tstid": [4, 5, 6]}
    root.mkdir(parents=True, exist_ok=True)
    # the real file stores 1 x N arrays of ids
    scipy_io.savemat(str(root / "setid.mat"), {k: np.array([v], dtype=np.uint16) for k, v in splits.items()})
    width, height = size
    mask = block_mask(width, height, box)
    for ids in splits.values():
        for i in ids:
            save_jpeg(paint(mask, FLOWER, (30, 160, 40)), root / "jpg" / f"image_{i:05d}.jpg")
            save_jpeg(paint(mask, FLOWER, BLUE), root / "segmim" / f"segmim_{i:05d}.jpg")
    return splits


# ------------------------------------------------------------------------------ LFW
def make_lfw(
    root: Path,
    splits: Optional[Dict[str, List[Tuple[str, int]]]] = None,
    size: int = 64,
) -> Dict[str, List[Tuple[str, str]]]:
    """``lfw_funneled/<person>/<person>_<nnnn>.jpg``, part-label ``.ppm`` files and split files.

    Part labels: hair red (top-left quarter), face green (a centred square), the rest
    blue background. Only ``val`` and ``test`` images get ``.ppm`` files, like the real
    data (the real train images have none).
    """
    splits = splits or {
        "train": [("Alice_Smith", 1), ("Alice_Smith", 2), ("Bob_Jones", 1)],
        "val": [("Carol_King", 1)],
        "test": [("Dan_Brown", 3), ("Eve_Adams", 1)],
    }
    out: Dict[str, List[Tuple[str, str]]] = {}
    for split, people in splits.items():
        lines = []
        for person, number in people:
            name = f"{person}_{number:04d}"
            save_jpeg(gradient_image(size, size, number), root / "lfw_funneled" / person / f"{name}.jpg")
            if split != "train":
                parts = lfw_parts(size)
                path = root / "parts_lfw_funneled_gt_images" / f"{name}.ppm"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(parts).save(path, "PPM")
            lines.append((person, name))
        (root / f"{split}.txt").write_text("".join(f"{p} {n}\n" for p, n in lines))
        out[split] = lines
    return out


def lfw_parts(size: int) -> np.ndarray:
    """(size, size, 3) part labels: blue background, red hair block, green face block."""
    parts = np.zeros((size, size, 3), np.uint8)
    parts[..., 2] = 255
    q = size // 4
    parts[:q, :q] = (255, 0, 0)
    parts[q : 3 * q, q : 3 * q] = (0, 255, 0)
    return parts


def lfw_expected_foreground(size: int) -> np.ndarray:
    q = size // 4
    fg = np.zeros((size, size), bool)
    fg[:q, :q] = True
    fg[q : 3 * q, q : 3 * q] = True
    return fg


# ------------------------------------------------------------------------------ CUB
def make_cub(root: Path, codes: Sequence[int] = (0, 0, 1, 2, 0, 2), size: Tuple[int, int] = (64, 48)) -> List[str]:
    """``images.txt``, ``train_val_test_split.txt``, ``images/`` and ``segmentations/``.

    Image 2 is grayscale (mode L) and image 5 is CMYK, like a few real CUB images.
    Segmentations are soft 8-bit PNGs: a 255 square, a ring of 128 (foreground, > 0.5)
    and a ring of 127 (background), over 0.
    """
    width, height = size
    relpaths = []
    for i, _ in enumerate(codes, start=1):
        cls = f"{(i % 2) + 1:03d}.Bird_{(i % 2) + 1}"
        relpaths.append(f"{cls}/Bird_{(i % 2) + 1}_{i:04d}_{100 + i}.jpg")
    (root).mkdir(parents=True, exist_ok=True)
    (root / "images.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(relpaths, start=1)))
    (root / "train_val_test_split.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(codes, start=1)))
    for i, rel in enumerate(relpaths, start=1):
        mode = "L" if i == 2 else "CMYK" if i == 5 else None
        save_jpeg(gradient_image(width, height, i), root / "images" / rel, mode)
        seg = cub_segmentation(width, height)
        path = root / "segmentations" / rel.replace(".jpg", ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(seg, mode="L").save(path)
    return relpaths


def cub_segmentation(width: int, height: int) -> np.ndarray:
    seg = np.zeros((height, width), np.uint8)
    seg[8:40, 16:48] = 127
    seg[12:36, 20:44] = 128
    seg[16:32, 24:40] = 255
    return seg


# ------------------------------------------------------------------------------ MNIST
def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in LeCun's idx format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def fake_digits(n: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` 28 x 28 "digits" (a filled rectangle whose size encodes the label) and labels."""
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        images[i, 4 : 8 + 2 * label, 6:22] = 200 + (i % 50)
        images[i, 2, 2] = 100  # dark pixel: must be binarised away (< 128)
    return images, labels


def make_mnist(root: Path, n_train: int = 30, n_test: int = 20, compress: bool = True) -> Dict[str, np.ndarray]:
    """torchvision's ``root/MNIST/raw`` layout with idx files (gzipped or not)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = fake_digits(n_train)
    test_images, test_labels = fake_digits(n_test, 1)
    files = {
        "train-images-idx3-ubyte": train_images,
        "train-labels-idx1-ubyte": train_labels,
        "t10k-images-idx3-ubyte": test_images,
        "t10k-labels-idx1-ubyte": test_labels,
    }
    for name, array in files.items():
        data = idx_bytes(array)
        if compress:
            (raw / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (raw / name).write_bytes(data)
    return {"train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels}


# ------------------------------------------------------------------------------ folder
def make_folder(
    root: Path,
    stems: Iterable[str] = ("a", "b", "c", "d"),
    masks: bool = True,
    splits: Optional[Dict[str, List[str]]] = None,
    size: Tuple[int, int] = (48, 32),
) -> None:
    width, height = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        ext = ".png" if i % 2 == 0 else ".jpg"
        array = gradient_image(width, height, i)
        if ext == ".png":
            Image.fromarray(array).save(root / "images" / f"{stem}{ext}")
        else:
            save_jpeg(array, root / "images" / f"{stem}{ext}")
        if masks:
            (root / "masks").mkdir(exist_ok=True)
            mask = np.zeros((height, width), np.uint8)
            mask[8:24, 16:32] = 200
            mask[24:32, 32:40] = 127  # not foreground (> 127 is), inside the centre crop
            Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    if splits is not None:
        (root / "splits").mkdir(exist_ok=True)
        for split, names in splits.items():
            (root / "splits" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))


# ------------------------------------------------------------------------------ archives
def tar_gz(members: Dict[str, bytes]) -> bytes:
    """A .tgz archive (in memory) holding ``members`` (name -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folder_to_members(folder: Path, prefix: str = "") -> Dict[str, bytes]:
    """All files under ``folder`` as archive members named ``prefix + relative path``."""
    return {
        prefix + path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fake_flowers_source(work: Path):
    """Fake Flowers archives (as bytes, by file name) and a ``Source`` with their MD5s.

    The source's URLs are unreachable on purpose: tests must pass ``mirror=``.
    """
    from redo_lib.data.sources import RemoteFile, Source

    make_flowers(work, {"trnid": [1, 2], "valid": [3], "tstid": [4, 5, 6, 7]})
    files = {
        "102flowers.tgz": tar_gz(folder_to_members(work / "jpg", "jpg/")),
        "102segmentations.tgz": tar_gz(folder_to_members(work / "segmim", "segmim/")),
        "setid.mat": (work / "setid.mat").read_bytes(),
    }
    source = Source(
        name="flowers",
        loader="flowers",
        homepage="",
        files=(
            RemoteFile("102flowers.tgz", "http://invalid.example/102flowers.tgz", md5(files["102flowers.tgz"]),
                       len(files["102flowers.tgz"]), provides=("jpg",), extract=""),
            RemoteFile("102segmentations.tgz", "http://invalid.example/x.tgz", md5(files["102segmentations.tgz"]),
                       None, provides=("segmim",), extract=""),
            RemoteFile("setid.mat", "http://invalid.example/setid.mat", md5(files["setid.mat"]), None,
                       provides=("setid.mat",)),
        ),
    )
    return files, source


class FakeServer:
    """http.server in a thread: serves ``files``, honours ``Range``, can cut a transfer.

    ``log`` records ``(path, Range header or None)`` per request. ``cut[name] = n``
    sends the full headers but only ``n`` body bytes, then drops the connection (once).
    ``ignore_range`` answers 200 with the whole file even to a ``Range`` request.
    """

    def __init__(self, files: Dict[str, bytes]):
        self.files = dict(files)
        self.log: List[Tuple[str, Optional[str]]] = []
        self.cut: Dict[str, int] = {}
        self.ignore_range = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/").split("?")[0]
                range_header = self.headers.get("Range")
                server.log.append((name, range_header))
                data = server.files.get(name)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if range_header and not server.ignore_range:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.cut:
                    self.wfile.write(body[: server.cut.pop(name)])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------ authors' weights
def fake_official_archive(dataset: str = "flowers", part: str = "netM", seed: int = 0) -> Tuple[str, bytes]:
    """``(file name, .tar.gz bytes)`` of a fabricated archive of the authors' weights.

    It holds one ``<dataset>_<part>_state.pth`` in the official checkpoint format (an
    ``options`` namespace and one state dict per network, with the official key layout and
    random values: ``tests.test_pretrained.fabricate``), as the official Google Drive
    folder's archives do. Only ``part="netM"`` (F alone) is supported: F keeps its official
    size (about 0.3 M parameters), and the widths of the networks the file does not hold
    are shrunk in its options, so that building the model around it takes milliseconds.
    """
    import torch

    from redo_lib.pretrained import official_archive_name
    from tests.test_pretrained import fabricate

    if part != "netM":
        raise ValueError("only the netM archive (F alone) is fabricated: the others are full-size")
    checkpoint = fabricate(dataset, networks=("netEncM",), seed=seed)
    options = checkpoint["options"]
    options.nfX = options.nfD = options.nfZ = 4
    options.useSelfAttG = options.useSelfAttD = False
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    name = official_archive_name(dataset, part)
    return name, tar_gz({name.replace(".tar.gz", ".pth"): buffer.getvalue()})


# ------------------------------------------------------------------------------ photo-like Flowers
def photo_like(width: int, height: int, rng: np.random.Generator, noise: float = 6.0) -> np.ndarray:
    """(H, W, 3) uint8 with a photo's statistics for a JPEG coder: smooth colour regions
    (an upsampled coarse random field) plus fine grain, so that files decode as slowly as
    real photographs of that size (flat blocks decode much faster)."""
    coarse = rng.integers(0, 256, (max(2, height // 60), max(2, width // 60), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    grain = rng.normal(0.0, noise, (height, width, 3)).astype(np.float32)
    return (smooth + grain).clip(0, 255).astype(np.uint8)


def make_flowers_photos(
    root: Path, n_train: int, n_val: int = 0, n_test: int = 0, short_side: int = 500, seed: int = 0,
    quality: int = 85,
) -> Dict[str, List[int]]:
    """A Flowers-format folder of ``n_train + n_val + n_test`` photo-like images (benchmarks).

    Like the real files: the shorter side is ``short_side`` (500) pixels, the longer one
    drawn in [short, 1.4 short], portrait or landscape; ``image_%05d.jpg`` JPEGs of
    :func:`photo_like` content and ``segmim_%05d.jpg`` segmentations that keep the
    image's colours inside an ellipse (the flower) and paint the rest pure blue. Splits go
    to ``setid.mat`` like :func:`make_flowers` (``tstid`` is the training split).
    """
    from scipy import io as scipy_io

    rng = np.random.default_rng(seed)
    ids = list(range(1, n_train + n_val + n_test + 1))
    splits = {"tstid": ids[:n_train], "valid": ids[n_train:n_train + n_val], "trnid": ids[n_train + n_val:]}
    root.mkdir(parents=True, exist_ok=True)
    scipy_io.savemat(str(root / "setid.mat"), {k: np.array([v], dtype=np.uint16) for k, v in splits.items()})
    (root / "jpg").mkdir(exist_ok=True)
    (root / "segmim").mkdir(exist_ok=True)
    for i in ids:
        long_side = int(rng.integers(short_side, int(short_side * 1.4) + 1))
        width, height = (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)
        image = photo_like(width, height, rng)
        y, x = np.mgrid[0:height, 0:width]
        cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
        rx, ry = rng.uniform(0.2, 0.4) * width, rng.uniform(0.2, 0.4) * height
        flower = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0
        segmim = np.where(flower[..., None], image, np.array(BLUE, np.uint8)).astype(np.uint8)
        Image.fromarray(image).save(root / "jpg" / f"image_{i:05d}.jpg", "JPEG", quality=quality)
        Image.fromarray(segmim).save(root / "segmim" / f"segmim_{i:05d}.jpg", "JPEG", quality=quality)
    return splits
