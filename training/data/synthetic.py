"""Rendered text lines with known transcriptions: OCR training data the project makes itself.

No dataset can be downloaded here, and a from-scratch reference model needs image→text
pairs whose labels are exact. Lines are sampled from three kinds of content (words,
numbers, LaTeX-like formulas), rendered with TrueType fonts that ship in pip packages
(matplotlib's DejaVu and Computer Modern files) or Debian (``fonts-dejavu``), then lightly
augmented (offset, scale, ink and paper grey, blur, noise, slight rotation). Every line is a
pure function of ``(seed, split, index)``, so a split is reproducible and its lines never
overlap another split's by construction of the seeds.
"""

from __future__ import annotations

import hashlib
import math
import random
from functools import cache, lru_cache
from pathlib import Path
from typing import Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["words", "numbers", "formulas"]

WORDS = (
    "the of and to in is was for on are with as by at from this that have or be not which one all were "
    "when there can an your what about more their time if will would each how up out them then she many "
    "some so these her two like him see has look more day could come did number sound most people over "
    "know water than call first who may down side been now find any new work part take get place made "
    "live where after back little only round man year came show every good give our under name very "
    "through just form sentence great think say help low line differ turn cause much mean before move "
    "right boy old too same tell does set three want air well also play small end put home read hand "
    "port large spell add even land here must big high such follow act why ask men change went light "
    "kind off need house picture try again animal point mother world near build self earth father head "
    "stand own page should country found answer school grow study still learn plant cover food sun four "
    "between state keep eye never last let thought city tree cross farm hard start might story saw far "
    "sea draw left late run while press close night real life few north open seem together next white "
    "children begin got walk example ease paper group always music those both mark often letter until "
    "mile river car feet care second book carry took science eat room friend began idea fish mountain "
    "stop once base hear horse cut sure watch color face wood main enough plain girl usual young ready "
    "above ever red list though feel talk bird soon body dog family direct pose leave song measure door "
    "product black short numeral class wind question happen complete ship area half rock order fire "
    "south problem piece told knew pass since top whole king space heard best hour better true during "
    "hundred five remember step early hold west ground interest reach fast verb sing listen six table "
    "travel less morning ten simple several vowel toward war lay against pattern slow center love person "
    "money serve appear road map rain rule govern pull cold notice voice unit power town fine certain fly "
    "fall lead cry dark machine note wait plan figure star box noun field rest correct able pound done "
    "beauty drive stood contain front teach week final gave green quick develop ocean warm free minute "
    "strong special mind behind clear tail produce fact street inch multiply nothing course stay wheel "
    "full force blue object decide surface deep moon island foot system busy test record boat common "
    "gold possible plane stead dry wonder laugh thousand ago ran check game shape equate miss brought "
    "heat snow tire bring yes distant fill east paint language among grand ball yet wave drop heart "
    "present heavy dance engine position arm wide sail material size vary settle speak weight general "
    "ice matter circle pair include divide syllable felt perhaps pick sudden count square reason length "
    "represent art subject region energy hunt probable bed brother egg ride cell believe fraction forest "
    "sit race window store summer train sleep prove lone leg exercise wall catch mount wish sky board joy "
    "winter sat written wild instrument kept glass grass cow job edge sign visit past soft fun bright gas "
    "weather month million bear finish happy hope flower clothe strange gone jump baby eight village meet "
    "root buy raise solve metal whether push seven paragraph third shall held hair describe cook floor "
    "either result burn hill safe cat century consider type law bit coast copy phrase silent tall sand "
    "soil roll temperature finger industry value fight lie beat excite natural view sense ear else quite "
    "broke case middle kill son lake moment scale loud spring observe child straight consonant nation "
    "dictionary milk speed method organ pay age section dress cloud surprise quiet stone tiny climb cool "
    "design poor lot experiment bottom key iron single stick flat twenty skin smile crease hole trade "
    "melody trip office receive row mouth exact symbol die least trouble shout except wrote seed tone "
    "join suggest clean break lady yard rise bad blow oil blood touch grew cent mix team wire cost lost "
    "brown wear garden equal sent choose fell fit flow fair bank collect save control decimal gentle "
    "woman captain practice separate difficult doctor please protect noon whose locate ring character "
    "insect caught period indicate radio spoke atom human history effect electric expect crop modern "
    "element hit student corner party supply bone rail imagine provide agree thus capital chair danger "
    "fruit rich thick soldier process operate guess necessary sharp wing create neighbor wash bat rather "
    "crowd corn compare poem string bell depend meat rub tube famous dollar stream fear sight thin "
    "triangle planet hurry chief colony clock mine tie enter major fresh search send yellow gun allow "
    "print dead spot desert suit current lift rose continue block chart hat sell success company subtract "
    "event particular deal swim term opposite wife shoe shoulder spread arrange camp invent cotton born "
    "determine quart nine truck noise level chance gather shop stretch throw shine property column "
    "molecule select wrong gray repeat require broad prepare salt nose plural anger claim continent "
    "oxygen sugar death pretty skill women season solution magnet silver thank branch match suffix "
    "especially fig afraid huge sister steel discuss forward similar guide experience score apple bought "
    "led pitch coat mass card band rope slip win dream evening condition feed tool total basic smell "
    "valley nor double seat arrive master track parent shore division sheet substance favor connect post "
    "spend chord fat glad original share station dad bread charge proper bar offer segment slave duck "
    "instant market degree populate chick dear enemy reply drink occur support speech nature range steam "
    "motion path liquid log meant quotient teeth shell neck"
).split()

_FORMULA_SYMBOLS = ("x", "y", "z", "a", "b", "c", "n", "k", "t", r"\alpha", r"\beta", r"\theta", r"\lambda", r"\pi")


class SyntheticConfig(BaseModel):
    """What lines look like. Defaults suit the reference model: short lines, 28 px tall."""

    model_config = ConfigDict(extra="forbid")

    kinds: list[Kind] = Field(default_factory=lambda: ["words", "numbers"], description="content mix, drawn uniformly")
    fonts: list[str] = Field(default_factory=lambda: ["DejaVuSans.ttf"], description="font file names or paths")
    max_chars: int = Field(24, ge=4, description="longest word or number line in characters (formulas are never cut)")
    height: int = Field(28, ge=14, description="image height in px")
    width: int | None = Field(
        None,
        ge=28,
        description="fixed image width in px, text left-aligned (a wider line is scaled down to fit); null: width follows the text",
    )
    font_size: tuple[int, int] = Field((16, 20), description="font size range in px")
    pitch: int | None = Field(
        None,
        ge=8,
        description=(
            "fixed character pitch in px: each character is centred in its own cell (typewriter layout); "
            "null: the font's own advance"
        ),
    )
    augment: bool = Field(True, description="offset, ink/paper grey, noise, blur, slight rotation")
    seed: int = Field(0, description="lines are a pure function of (seed, split, index)")


def font_dirs() -> list[Path]:
    """Folders searched for font names: matplotlib's bundled fonts, then Debian's."""
    dirs: list[Path] = []
    try:
        import matplotlib

        dirs.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:
        pass
    dirs += [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype")]
    return dirs


@cache
def find_font(name: str) -> Path:
    """Resolve a font file name (or path) to a file, or say where it was looked for."""
    candidate = Path(name)
    if candidate.is_file():
        return candidate
    for folder in font_dirs():
        if (folder / name).is_file():
            return folder / name
    searched = ", ".join(str(d) for d in font_dirs())
    raise FileNotFoundError(f"font {name!r} not found (searched {searched}); install matplotlib or fonts-dejavu")


def sample_text(rng: random.Random, kind: Kind, max_chars: int) -> str:
    """One line of the given kind, at most ``max_chars`` long."""
    if kind == "words":
        words: list[str] = []
        for _ in range(rng.randint(1, 5)):
            word = rng.choice(WORDS)
            if words and len(" ".join(words + [word])) > max_chars - 1:
                break
            words.append(word)
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        text = " ".join(words)
        if rng.random() < 0.2:
            text += rng.choice(".,;:!?")
    elif kind == "numbers":
        text = rng.choice(
            [
                lambda: str(rng.randint(0, 10**rng.randint(1, 7))),
                lambda: f"{rng.uniform(-1000, 1000):.{rng.randint(1, 3)}f}",
                lambda: f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1950, 2030)}",
                lambda: f"${rng.randint(1, 99999):,}.{rng.randint(0, 99):02d}",
                lambda: f"{rng.randint(1, 100)}%",
                lambda: f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            ]
        )()
    else:
        return sample_formula(rng)  # never cut: a cut formula is not valid LaTeX
    return text[:max_chars].rstrip()


def sample_formula(rng: random.Random) -> str:
    """A short LaTeX-like formula: fractions, powers, subscripts, sums."""
    s = lambda: rng.choice(_FORMULA_SYMBOLS)
    d = lambda: str(rng.randint(1, 9))
    return rng.choice(
        [
            lambda: f"{s()}^{{{d()}}}+{s()}_{{{d()}}}",
            lambda: rf"\frac{{{s()}}}{{{d()}}}",
            lambda: f"{s()}={d()}{s()}+{d()}",
            lambda: rf"\sqrt{{{s()}+{d()}}}",
            lambda: rf"\sum_{{{s()}}} {s()}_{{{s()}}}",
            lambda: f"({s()}+{s()})^{{{d()}}}",
        ]
    )()


def render_line(
    text: str,
    font_path: Path,
    *,
    height: int,
    font_size: int,
    rng: random.Random | None,
    formula: bool = False,
    pitch: int | None = None,
    width: int | None = None,
):
    """Render one line as an RGB image, on a ``width`` px canvas if given; with ``rng``, augmented."""
    from PIL import Image, ImageFilter

    if formula:
        image = _render_mathtext(text, font_size, height)
    elif pitch is not None:
        image = _render_pitched(text, _load_font(str(font_path), font_size), height, pitch, rng)
    else:
        image = _render_proportional(text, _load_font(str(font_path), font_size), height, rng)
    if width is not None:
        image = fit_width(image, width)
    if rng is None:
        return image.convert("RGB")
    import numpy as np

    ink, paper = rng.randint(0, 80), rng.randint(200, 255)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = ink + (paper - ink) * pixels
    pixels += np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(0, 8), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    if rng.random() < 0.3:  # at most ~2 px of vertical drift at the line's ends, however long it is
        limit = min(1.5, math.degrees(math.atan(4 / image.width)))
        image = image.rotate(rng.uniform(-limit, limit), fillcolor=paper, expand=False)
    return image.convert("RGB")


def _render_proportional(text: str, font, height: int, rng: random.Random | None):
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(text)
    pad = 4
    image = Image.new("L", (max(right - left + 2 * pad, height), height), 255)
    y = (height - (bottom - top)) // 2 - top + (rng.randint(-2, 2) if rng is not None else 0)
    ImageDraw.Draw(image).text((pad - left, y), text, font=font, fill=0)
    return image


def _render_pitched(text: str, font, height: int, pitch: int, rng: random.Random | None):
    """Each character centred in its own ``pitch``-wide cell, cell k at ``k * pitch``.

    With the pitch equal to a visual token's width (28 px for Qwen2.5-VL) the k-th
    character is the k-th token column, so reading order is a fixed offset between text
    and image positions that a model trained from scratch learns within minutes.
    """
    from PIL import Image, ImageDraw

    image = Image.new("L", (max(len(text) * pitch, height), height), 255)
    draw = ImageDraw.Draw(image)
    _, top, _, bottom = font.getbbox("Hgjy")  # one baseline for the whole line
    y = (height - (bottom - top)) // 2 - top + (rng.randint(-2, 2) if rng is not None else 0)
    for index, char in enumerate(text):
        jitter = rng.randint(-2, 2) if rng is not None else 0
        x = index * pitch + (pitch - font.getlength(char)) / 2 + jitter
        draw.text((x, y), char, font=font, fill=0)
    return image


@lru_cache(maxsize=256)
def _load_font(path: str, size: int):
    """Fonts are parsed once per (file, size): loading dominates rendering time otherwise."""
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _render_mathtext(latex: str, font_size: int, height: int):
    """Render a formula with matplotlib's mathtext (no TeX install needed), scaled to ``height``."""
    import io

    from matplotlib.figure import Figure
    from PIL import Image, ImageOps

    figure = Figure(figsize=(0.01, 0.01), dpi=100)
    figure.text(0, 0, f"${latex}$", fontsize=font_size * 0.72)
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=100, format="png", bbox_inches="tight", pad_inches=0.04, facecolor="white")
    image = ImageOps.grayscale(Image.open(buffer))
    scale = height / image.height
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), height))
    canvas = Image.new("L", (max(image.width + 8, height), height), 255)
    canvas.paste(image, (4, (height - image.height) // 2))
    return canvas


def fit_width(image, width: int):
    """Place a line on a canvas of fixed width (left-aligned, paper-coloured), shrinking it if it is wider.

    A fixed width gives every line the same grid of visual tokens, so the position of the
    k-th character relative to the text tokens does not depend on the line's length, which
    makes reading order much faster to learn for a model trained from scratch.
    """
    from PIL import Image

    height = image.height
    if image.width > width:
        image = image.resize((width, max(1, round(height * width / image.width))))
    paper = image.getpixel((image.width - 1, 0))
    canvas = Image.new(image.mode, (width, height), paper)
    canvas.paste(image, (0, (height - image.height) // 2))
    return canvas


def split_seed(seed: int, split: str) -> int:
    """A per-split seed, so train/val/test never draw the same random stream."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{split}".encode()).digest()[:8], "big")


def generate_lines(config: SyntheticConfig, split: str, count: int) -> Iterator[tuple[object, str]]:
    """Yield ``count`` (image, text) pairs for a split, deterministically."""
    base = split_seed(config.seed, split)
    fonts = [find_font(name) for name in config.fonts]
    for index in range(count):
        rng = random.Random(base + index)
        kind = rng.choice(config.kinds)
        text = sample_text(rng, kind, config.max_chars)
        image = render_line(
            text,
            rng.choice(fonts),
            height=config.height,
            font_size=rng.randint(*config.font_size),
            rng=rng if config.augment else None,
            formula=kind == "formulas",
            pitch=config.pitch,
            width=config.width,
        )
        yield image, text


def write_splits(config: SyntheticConfig, out_dir: str | Path, sizes: dict[str, int]) -> dict[str, Path]:
    """Write ``{split}.parquet`` files (columns ``image`` as a HF Image feature and ``text``)."""
    from datasets import Dataset, Features, Image, Value

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    features = Features({"image": Image(), "text": Value("string")})
    paths: dict[str, Path] = {}
    for split, count in sizes.items():
        rows = list(generate_lines(config, split, count))
        dataset = Dataset.from_dict({"image": [r[0] for r in rows], "text": [r[1] for r in rows]}, features=features)
        paths[split] = out / f"{split}.parquet"
        dataset.to_parquet(str(paths[split]))
    (out / "synthetic_config.json").write_text(config.model_dump_json(indent=2))
    return paths
