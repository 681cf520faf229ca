"""Charts as a PNG, rasterised and encoded here (zlib and struct): no imaging library at run time.

The same charts as the SVG (:mod:`fahr_core.charts.svg`'s layout), stacked: 800 pixels wide, 400
high per chart, 8-bit RGB. Text is drawn in a small built-in 5x7 bitmap font, twice its size for
titles; a character it lacks is drawn as ``?`` (upper case as lower case).
"""

from __future__ import annotations

import struct
import zlib
from typing import Iterator, Sequence

from fahr_core.charts import HEIGHT, WIDTH, Chart
from fahr_core.charts.svg import COLOURS, layout

SIGNATURE = b"\x89PNG\r\n\x1a\n"

# 5x7 glyphs, a row each of five pixels ("#" on), top to bottom.
_GLYPHS = {
    " ": ".....|.....|.....|.....|.....|.....|.....",
    "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.",
    "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",
    "2": ".###.|#...#|....#|...#.|..#..|.#...|#####",
    "3": "#####|...#.|..#..|...#.|....#|#...#|.###.",
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.",
    "5": "#####|#....|####.|....#|....#|#...#|.###.",
    "6": "..##.|.#...|#....|####.|#...#|#...#|.###.",
    "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",
    "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.",
    "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",
    "a": ".....|.....|.###.|....#|.####|#...#|.####",
    "b": "#....|#....|#.##.|##..#|#...#|#...#|####.",
    "c": ".....|.....|.###.|#....|#....|#...#|.###.",
    "d": "....#|....#|.##.#|#..##|#...#|#...#|.####",
    "e": ".....|.....|.###.|#...#|#####|#....|.###.",
    "f": "..##.|.#..#|.#...|###..|.#...|.#...|.#...",
    "g": ".....|.####|#...#|#...#|.####|....#|.###.",
    "h": "#....|#....|#.##.|##..#|#...#|#...#|#...#",
    "i": "..#..|.....|.##..|..#..|..#..|..#..|.###.",
    "j": "...#.|.....|..##.|...#.|...#.|#..#.|.##..",
    "k": "#....|#....|#..#.|#.#..|##...|#.#..|#..#.",
    "l": ".##..|..#..|..#..|..#..|..#..|..#..|.###.",
    "m": ".....|.....|##.#.|#.#.#|#.#.#|#...#|#...#",
    "n": ".....|.....|#.##.|##..#|#...#|#...#|#...#",
    "o": ".....|.....|.###.|#...#|#...#|#...#|.###.",
    "p": ".....|.....|####.|#...#|####.|#....|#....",
    "q": ".....|.....|.##.#|#..##|.####|....#|....#",
    "r": ".....|.....|#.##.|##..#|#....|#....|#....",
    "s": ".....|.....|.###.|#....|.###.|....#|####.",
    "t": ".#...|.#...|###..|.#...|.#...|.#..#|..##.",
    "u": ".....|.....|#...#|#...#|#...#|#..##|.##.#",
    "v": ".....|.....|#...#|#...#|#...#|.#.#.|..#..",
    "w": ".....|.....|#...#|#...#|#.#.#|#.#.#|.#.#.",
    "x": ".....|.....|#...#|.#.#.|..#..|.#.#.|#...#",
    "y": ".....|.....|#...#|#...#|.####|....#|.###.",
    "z": ".....|.....|#####|...#.|..#..|.#...|#####",
    ".": ".....|.....|.....|.....|.....|.##..|.##..",
    ",": ".....|.....|.....|.....|.##..|..#..|.#...",
    "-": ".....|.....|.....|#####|.....|.....|.....",
    "+": ".....|..#..|..#..|#####|..#..|..#..|.....",
    "=": ".....|.....|#####|.....|#####|.....|.....",
    "_": ".....|.....|.....|.....|.....|.....|#####",
    "/": ".....|....#|...#.|..#..|.#...|#....|.....",
    ":": ".....|.##..|.##..|.....|.##..|.##..|.....",
    "(": "...#.|..#..|.#...|.#...|.#...|..#..|...#.",
    ")": ".#...|..#..|...#.|...#.|...#.|..#..|.#...",
    "[": ".###.|.#...|.#...|.#...|.#...|.#...|.###.",
    "]": ".###.|...#.|...#.|...#.|...#.|...#.|.###.",
    "%": "##...|##..#|...#.|..#..|.#...|#..##|...##",
    "*": ".....|..#..|#.#.#|.###.|#.#.#|..#..|.....",
    "?": ".###.|#...#|....#|...#.|..#..|.....|..#..",
    "'": "..#..|..#..|.#...|.....|.....|.....|.....",
    "\"": ".#.#.|.#.#.|.....|.....|.....|.....|.....",
    "<": "...#.|..#..|.#...|#....|.#...|..#..|...#.",
    ">": ".#...|..#..|...#.|....#|...#.|..#..|.#...",
    "@": ".###.|#...#|#.###|#.#.#|#.###|#....|.###.",
    "#": ".#.#.|.#.#.|#####|.#.#.|#####|.#.#.|.#.#.",
    "!": "..#..|..#..|..#..|..#..|..#..|.....|..#..",
    "~": ".....|.....|.#...|#.#.#|...#.|.....|.....",
    "…": ".....|.....|.....|.....|.....|.....|#.#.#",
}
_BITS = {char: [[cell == "#" for cell in row] for row in glyph.split("|")] for char, glyph in _GLYPHS.items()}


class Canvas:
    """An RGB image in memory, white, with the few things a chart draws."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, colour: tuple[int, int, int], size: int = 1) -> None:
        for dy in range(size):
            for dx in range(size):
                px, py = x + dx, y + dy
                if 0 <= px < self.width and 0 <= py < self.height:
                    at = (py * self.width + px) * 3
                    self.pixels[at:at + 3] = bytes(colour)

    def line(self, x0: float, y0: float, x1: float, y1: float, colour, size: int = 1) -> None:
        """A straight line (Bresenham's), ``size`` pixels thick."""
        x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        error = dx + dy
        for _ in range(dx - dy + 1):  # at most as many steps as pixels: a line ends
            self.dot(x0 - size // 2, y0 - size // 2, colour, size)
            if x0 == x1 and y0 == y1:
                break
            twice = 2 * error
            if twice >= dy:
                error += dy
                x0 += sx
            if twice <= dx:
                error += dx
                y0 += sy

    def text(self, x: float, y: float, text: str, colour=(0, 0, 0), scale: int = 1, anchor: str = "start") -> None:
        """``text`` with its baseline at ``y``; ``anchor``: ``start``, ``middle`` or ``end`` at ``x``."""
        advance = 6 * scale
        width = advance * len(text)
        left = int(x - (width / 2 if anchor == "middle" else width if anchor == "end" else 0))
        top = int(y) - 7 * scale
        for i, char in enumerate(text):
            glyph = _BITS.get(char) or _BITS.get(char.lower()) or _BITS["?"]
            for row, bits in enumerate(glyph):
                for column, on in enumerate(bits):
                    if on:
                        self.dot(left + i * advance + column * scale, top + row * scale, colour, scale)

    def rows(self) -> bytes:
        """The image's rows as PNG's image data holds them before compression: each unfiltered."""
        stride = self.width * 3
        return b"".join(b"\x00" + bytes(self.pixels[row * stride:(row + 1) * stride]) for row in range(self.height))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def _plain(text: str) -> str:
    from fahr_core import ui

    return ui.visible(text)


def render(charts: Sequence[Chart]) -> bytes:
    """One PNG holding every chart, stacked: ``WIDTH`` by ``HEIGHT`` times their number."""
    return b"".join(pieces(charts))


def pieces(charts: Sequence[Chart]) -> Iterator[bytes]:
    """The PNG of :func:`render` in pieces, drawn and compressed a chart at a time: the memory it
    takes is one chart's pixels whatever the number of charts (the whole canvas was 1 MB a chart)."""
    height = HEIGHT * max(len(charts), 1)
    yield SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", WIDTH, height, 8, 2, 0, 0, 0))
    packer = zlib.compressobj(6)
    for chart in charts or [None]:
        canvas = Canvas(WIDTH, HEIGHT)
        if chart is not None:
            _draw(canvas, chart)
        if data := packer.compress(canvas.rows()):
            yield _chunk(b"IDAT", data)  # consecutive IDAT chunks are one stream (the PNG standard)
    yield _chunk(b"IDAT", packer.flush()) + _chunk(b"IEND", b"")


def _draw(canvas: Canvas, chart: Chart) -> None:
    """One chart on a canvas of its own size."""
    grey, light, black = (136, 136, 136), (235, 235, 235), (0, 0, 0)
    shape = layout(chart)
    x0, y0, x1, y1 = shape["box"]
    canvas.text(*shape["title"], _plain(chart.metric)[:60], black, scale=2)
    for y, label in shape["y_ticks"]:
        canvas.line(x0, y, x1, y, light)
        canvas.line(x0 - 5, y, x0, y, grey)
        canvas.text(x0 - 8, y + 4, label, black, anchor="end")
    for x, label in shape["x_ticks"]:
        canvas.line(x, y1, x, y1 + 5, grey)
        canvas.text(x, y1 + 18, label, black, anchor="middle")
    for a, b, c, d in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)):
        canvas.line(a, b, c, d, grey)
    canvas.text(*shape["x_label"], chart.x_label, black, anchor="middle")
    for line, points in zip(chart.lines, shape["polylines"]):
        colour = _rgb(COLOURS[line.index % len(COLOURS)])
        if len(points) == 1:
            canvas.dot(int(points[0][0]) - 2, int(points[0][1]) - 2, colour, 5)
        for (a, b), (c, d) in zip(points, points[1:]):
            canvas.line(a, b, c, d, colour, 2)
    for y, line in shape["legend"]:
        colour = _rgb(COLOURS[line.index % len(COLOURS)])
        canvas.line(x0, y - 4, x0 + 20, y - 4, colour, 3)
        text = _plain(line.label + (f"  {line.detail}" if line.detail else ""))
        canvas.text(x0 + 28, y, text[:(WIDTH - x0 - 40) // 6], black)
    if shape["hidden"]:
        canvas.text(x1, shape["legend"][-1][0], f"and {shape['hidden']} more", black, anchor="end")
