"""Speech synthesis with espeak-ng for synthetic corpora: voices, labels, noise, speed perturbation.

espeak-ng comes from the ``espeakng-loader`` wheel (libespeak-ng 1.52 with its data); it is driven
through ctypes because no maintained Python binding exposes both synthesis and
``espeak_TextToPhonemes``.

Two properties of the library shape this module:

* **Hidden state.** libespeak-ng keeps static state between utterances (the pitch-flutter index,
  waveform phase, echo buffer), so the same text and voice give different samples depending on what
  the process synthesised before; ``espeak_ng_SetRandSeed`` and re-initialising do not reset it.
  A corpus would then depend on how utterances were spread over worker processes. ``EspeakSynthesizer``
  therefore runs a small helper process that initialises espeak once and forks a fresh child per
  utterance: every utterance starts from the same state, so its audio is a pure function of
  (text, voice) and generation is reproducible for any number of workers (~4 ms extra per call).
* **What it says is not what pypinyin says.** espeak applies 一/不 sandhi and neutral tones that
  citation pinyin lacks; labels taken from pypinyin disagree with the audio in about 5 % of
  syllables. ``EspeakPinyin`` turns espeak's own phoneme string into tonal pinyin instead.

Everything here is generic: the corpus recipe (``local/synth_zh``) chooses texts, voices, noise and
splits.
"""

from __future__ import annotations

import ctypes
import io
import json
import logging
import os
import re
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np

from senone import SenoneError

log = logging.getLogger(__name__)

__all__ = [
    "ESPEAK_SAMPLE_RATE",
    "EspeakVoice",
    "EspeakPhonemizer",
    "EspeakSynthesizer",
    "EspeakPinyin",
    "RenderSpec",
    "espeak_version",
    "foreign_languages",
    "resample",
    "make_noise",
    "mix_at_snr",
    "render",
    "has_speech",
    "available_variants",
    "encode_audio",
    "RenderPool",
]

ESPEAK_SAMPLE_RATE = 22050
"""espeak-ng's output rate (checked against ``espeak_Initialize``'s return value at start-up)."""

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4


def _espeak_paths() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise SenoneError("espeakng-loader is not installed; pip install espeakng-loader") from e
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


@lru_cache(maxsize=1)
def available_variants() -> frozenset[str]:
    """Voice variants shipped with espeak-ng (file names under ``espeak-ng-data/voices/!v``).

    espeak silently ignores an unknown variant (``cmn+nosuch`` speaks as plain ``cmn``), so
    callers check names against this set.
    """
    from pathlib import Path

    folder = Path(_espeak_paths()[1]) / "voices" / "!v"
    return frozenset(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else frozenset()


@dataclass(frozen=True)
class EspeakVoice:
    """One synthetic speaker: an espeak voice, a voice variant and prosody settings.

    Attributes:
        language: espeak voice name (``cmn`` reads Chinese characters as Mandarin).
        variant: voice variant file under ``voices/!v`` (``m1``..``m7``, ``f1``..``f5``, ``klatt``...),
            or ``None`` for the plain voice. The variant changes timbre and base pitch.
        pitch: ``espeakPITCH``, 0..100 (50 = the variant's own base pitch).
        pitch_range: ``espeakRANGE``, 0..100: how far intonation (and Mandarin tone contours) moves.
        rate: ``espeakRATE``, speaking rate in words per minute (80..450; espeak's default 175).
    """

    language: str = "cmn"
    variant: str | None = None
    pitch: int = 50
    pitch_range: int = 50
    rate: int = 175

    @property
    def name(self) -> str:
        """The name ``espeak_SetVoiceByName`` takes (``cmn+m3``)."""
        return f"{self.language}+{self.variant}" if self.variant else self.language

    def params(self) -> dict[int, int]:
        return {_PARAM_RATE: self.rate, _PARAM_PITCH: self.pitch, _PARAM_RANGE: self.pitch_range, _PARAM_VOLUME: 100}


# --------------------------------------------------------------------------------------------------
# In-process library: text analysis only (no audio, so its hidden wave state never matters).

_lib_lock = threading.Lock()
_lib_handle: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """Load and initialise libespeak-ng once per process (synchronous mode, no audio device)."""
    global _lib_handle
    with _lib_lock:
        if _lib_handle is None:
            lib_path, data_path = _espeak_paths()
            lib = ctypes.CDLL(lib_path)
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
            if rate != ESPEAK_SAMPLE_RATE:
                raise SenoneError(f"{lib_path}: espeak_Initialize returned {rate}, expected {ESPEAK_SAMPLE_RATE}; "
                                  "reinstall espeakng-loader")
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetVoiceByName.restype = ctypes.c_int
            lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
            lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
            lib.espeak_Info.restype = ctypes.c_char_p
            lib.espeak_Info.argtypes = [ctypes.c_void_p]
            _lib_handle = lib
        return _lib_handle


def espeak_version() -> str:
    """The libespeak-ng version string (recorded in corpus reports)."""
    return _lib().espeak_Info(None).decode()


class EspeakPhonemizer:
    """espeak's own reading of a text as phoneme mnemonics (``espeak_TextToPhonemes``).

    The ASCII mnemonics mark Mandarin tones with Chao tone letters as digits (``55 35 214 51 11``),
    and a word that espeak reads in another language is wrapped in a language switch, e.g.
    ``(en)want'u:...(cmn)`` for a dictionary entry it spells out in English.
    """

    def __init__(self, voice: str = "cmn"):
        self.voice = voice
        self._current: str | None = None

    def phonemes(self, text: str, voice: str | None = None) -> str:
        """Return the phoneme string of ``text``, clauses joined by a space."""
        lib = _lib()
        voice = voice or self.voice
        with _lib_lock:
            if voice != self._current:
                if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise SenoneError(f"espeak-ng has no voice {voice!r}; list voices with `espeak-ng --voices`")
                self._current = voice
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            ptr = ctypes.c_void_p(ctypes.addressof(buf))
            clauses = []
            while ptr.value:
                out = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, 0)
                if out:
                    clauses.append(out.decode("utf-8", errors="replace").strip())
        return " ".join(c for c in clauses if c)


_LANG_SWITCH = re.compile(r"\(([A-Za-z][A-Za-z0-9-]*)\)")


def foreign_languages(phonemes: str, language: str = "cmn") -> list[str]:
    """Languages other than ``language`` that espeak switched to while reading (``["en"]``).

    A Chinese sentence read partly as English (espeak spells out some dictionary entries, such as
    erhua words, letter by letter) would make audio and transcript disagree.
    """
    return sorted({m for m in _LANG_SWITCH.findall(phonemes) if m != language})


# --------------------------------------------------------------------------------------------------
# Audio: a helper process forks a fresh child per utterance (see the module docstring).

_ZYGOTE = r"""
import ctypes, json, os, struct, sys
lib = ctypes.CDLL(sys.argv[1])
lib.espeak_Initialize.restype = ctypes.c_int
lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
rate = lib.espeak_Initialize(2, 0, sys.argv[2].encode(), 0)
CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
chunks = []
def collect(wav, n, events):
    if n > 0 and wav:
        chunks.append(ctypes.string_at(wav, 2 * n))
    return 0
callback = CB(collect)
lib.espeak_SetSynthCallback(callback)
lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                             ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
lib.espeak_SetVoiceByName(b"cmn")  # load the dictionary once, before forking
out = sys.stdout.buffer
out.write(struct.pack("<i", rate)); out.flush()
for line in sys.stdin.buffer:
    req = json.loads(line)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        status = 0
        if lib.espeak_SetVoiceByName(req["voice"].encode()) != 0:
            status = 2
        else:
            for key, value in req["params"]:
                lib.espeak_SetParameter(key, value, 0)
            lib.espeak_ng_SetRandSeed(req["rand_seed"])  # espeak seeds it from the clock otherwise
            text = req["text"].encode() + b"\0"
            if lib.espeak_Synth(text, len(text), 0, 1, 0, 1, None, None) != 0:
                status = 3
            elif lib.espeak_Synchronize() != 0:
                status = 4
        data = memoryview(struct.pack("<iq", status, sum(map(len, chunks))) + b"".join(chunks))
        while data:
            data = data[os.write(w, data):]
        os._exit(0)
    os.close(w)
    parts = []
    while True:
        b = os.read(r, 1 << 20)
        if not b:
            break
        parts.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    reply = b"".join(parts)
    if len(reply) < 12:
        reply = struct.pack("<iq", 5, 0)
    out.write(reply); out.flush()
"""

_STATUS = {2: "unknown voice", 3: "espeak_Synth failed", 4: "espeak_Synchronize failed", 5: "synthesis child crashed"}


class EspeakSynthesizer:
    """Synthesise text with espeak-ng; each utterance starts from the same library state.

    Not thread-safe; use one per process (worker processes each make their own). Close it (or use
    it as a context manager) to stop the helper process; it also exits when its parent does.
    """

    def __init__(self) -> None:
        lib_path, data_path = _espeak_paths()
        self._proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, lib_path, data_path],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        head = self._proc.stdout.read(4)
        if len(head) != 4:
            raise SenoneError(f"{lib_path}: the espeak-ng helper process failed to start; "
                              "check that espeakng-loader imports and its library loads")
        rate = struct.unpack("<i", head)[0]
        if rate != ESPEAK_SAMPLE_RATE:
            raise SenoneError(f"{lib_path}: espeak_Initialize returned {rate}, expected {ESPEAK_SAMPLE_RATE}")
        self.sample_rate = rate
        self._owner_pid = os.getpid()  # a forked copy of this object must not close the helper

    def synthesize(self, text: str, voice: EspeakVoice, rand_seed: int = 0) -> np.ndarray:
        """Return espeak's int16 samples at ``sample_rate`` (empty if it produced no audio).

        ``rand_seed`` seeds espeak's own random numbers (breathiness noise of some variants, such as
        f2, f3, f5), which espeak would otherwise seed from the clock.
        Raises ``SenoneError`` if espeak fails (unknown voice, synthesis error).
        """
        if self._proc.poll() is not None:
            raise SenoneError("the espeak-ng helper process has exited; create a new EspeakSynthesizer")
        if voice.variant and voice.variant not in available_variants():
            raise SenoneError(f"espeak-ng has no voice variant {voice.variant!r}; "
                              f"choose one of {sorted(available_variants())[:12]}...")
        req = {"text": text, "voice": voice.name, "params": sorted(voice.params().items()),
               "rand_seed": int(rand_seed) % (1 << 31)}
        self._proc.stdin.write(json.dumps(req, ensure_ascii=False).encode() + b"\n")
        self._proc.stdin.flush()
        head = self._proc.stdout.read(12)
        if len(head) != 12:
            raise SenoneError(f"the espeak-ng helper process died while reading {text[:30]!r}")
        status, nbytes = struct.unpack("<iq", head)
        data = self._proc.stdout.read(nbytes)
        if status:
            raise SenoneError(f"espeak-ng voice {voice.name!r}: {_STATUS.get(status, status)} for text {text[:30]!r}")
        return np.frombuffer(data, dtype=np.int16)

    def close(self) -> None:
        if os.getpid() != self._owner_pid:
            return
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        self._proc.stdout.close()

    def __enter__(self) -> "EspeakSynthesizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


# --------------------------------------------------------------------------------------------------
# Mandarin labels from espeak's own phonemes.

_TONE_OF_CHAO = {"55": "1", "35": "2", "214": "3", "51": "4", "11": "5"}
_PAUSES = re.compile(r"_+[|:!]*|\|+")


def _pinyin_inventory() -> list[str]:
    """Every toneless syllable in pypinyin's character table, TONE3 spelling (``lv``, ``nve``)."""
    from pypinyin import Style
    from pypinyin.pinyin_dict import pinyin_dict
    from pypinyin.style import convert

    bases = set()
    for readings in pinyin_dict.values():
        for r in readings.split(","):
            b = convert(r, Style.TONE3, strict=True, neutral_tone_with_five=True)
            b = b.rstrip("012345")
            if b.isalpha() and b.isascii():
                bases.add(b)
    return sorted(bases)


class EspeakPinyin:
    """Convert espeak-ng's Mandarin phoneme mnemonics into tonal pinyin (TONE3, neutral tone ``5``).

    In espeak's output a syllable is ``<onset+nucleus><Chao tone digits><coda n|N>``, e.g.
    ``X'@214n`` for hen3. The table from mnemonics to pinyin is read from espeak itself: every
    syllable in pypinyin's inventory is spoken through the ``cmn-latn-pinyin`` voice and its phonemes
    recorded, so the table follows the installed espeak version instead of a hand-written list.
    Syllables that espeak cannot say as Mandarin (it spells xiong/qiong/jiong in English) are
    absent, and sentences containing them are rejected by ``foreign_languages`` anyway.
    """

    def __init__(self, phonemizer: EspeakPhonemizer | None = None):
        self.phonemizer = phonemizer or EspeakPhonemizer()
        self.table = self._build_table()

    def _build_table(self) -> dict[tuple[str, str], str]:
        table: dict[tuple[str, str], str] = {}
        for base in _pinyin_inventory():
            ph = self.phonemizer.phonemes(base + "1", voice="cmn-latn-pinyin")
            if foreign_languages(ph, "cmn"):
                continue
            parsed = self._split(ph)
            if parsed is None or len(parsed) != 1 or len(parsed[0]) != 1:
                continue
            runs = parsed[0][0]
            body, coda = runs[0], runs[2]
            if coda not in ("", "n", "N"):
                continue
            key = (body, coda)
            if key in table and table[key] != base:
                log.debug("espeak mnemonic %s%s is shared by %s and %s", body, coda, table[key], base)
                continue
            table.setdefault(key, base)
        if len(table) < 380:
            raise SenoneError(f"espeak-ng's cmn-latn-pinyin voice gave only {len(table)} syllables; "
                              "reinstall espeakng-loader (expected espeak-ng 1.52 data)")
        return table

    @staticmethod
    def _split(phonemes: str) -> list[list[tuple[str, str, str]]] | None:
        """Split into words of raw (body, tone, trailing-run) triples; None if a digit run is no tone."""
        words = []
        for word in _PAUSES.sub(" ", phonemes.replace("'", "").replace(",", "")).split():
            pieces = re.split(r"(\d+)", word)
            # pieces = [run0, tone1, run1, tone2, run2, ...]
            if len(pieces) < 3:
                if word.strip():
                    return None  # phonemes without a tone: not a Mandarin syllable
                continue
            tones = pieces[1::2]
            if any(t not in _TONE_OF_CHAO for t in tones):
                return None
            runs = pieces[0::2]
            words.append([(runs[i], tones[i], runs[i + 1]) for i in range(len(tones))])
        return words

    def to_pinyin(self, phonemes: str, hint: Sequence[str] | None = None) -> list[str] | None:
        """Tonal pinyin syllables for a phoneme string, or None if it cannot be parsed.

        A run between two tones holds the first syllable's coda and the next one's onset, and ``n``
        can be either (``S;i55nai51`` is xi1 nai4 or xin1 ai4). Each reading must use syllables
        from the table; among valid readings the one agreeing most with ``hint`` (toneless or
        TONE3 pinyin per syllable, e.g. from pypinyin) wins, then the one with fewer codas.
        """
        words = self._split(phonemes)
        if words is None:
            return None
        hint_bases = [h.rstrip("012345") for h in hint] if hint is not None else None
        result: list[str] = []
        for syllables in words:
            n = len(syllables)
            offset = len(result)
            # Boundaries 0..n: boundary i sits between syllable i-1 and i; options = (coda_prev, body_next).
            options: list[list[tuple[str, str]]] = []
            for i in range(n + 1):
                if i == 0:
                    run = syllables[0][0]
                    options.append([("", run)])
                elif i == n:
                    run = syllables[-1][2]
                    options.append([(run, "")])
                else:
                    run = syllables[i - 1][2]
                    opts = [("", run)]
                    if len(run) > 1 and run[0] in "nN":
                        opts.append((run[0], run[1:]))
                    options.append(opts)
            # Viterbi over boundary choices. best[i][j] = (score, back) for option j at boundary i.
            best: list[list[tuple[tuple[int, int], int] | None]] = [[((0, 0), -1)]]
            for i in range(1, n + 1):
                row: list[tuple[tuple[int, int], int] | None] = []
                for coda, _ in options[i]:
                    cand = None
                    for jp, (_, body) in enumerate(options[i - 1]):
                        prev = best[i - 1][jp]
                        if prev is None:
                            continue
                        base = self.table.get((body, coda))
                        if base is None:
                            continue
                        agree = int(hint_bases is not None and offset + i - 1 < len(hint_bases)
                                    and hint_bases[offset + i - 1] == base)
                        score = (prev[0][0] + agree, prev[0][1] - (coda != ""))
                        if cand is None or score > cand[0]:
                            cand = (score, jp)
                    row.append(cand)
                best.append(row)
            if best[n][0] is None:
                return None
            # Trace back the chosen boundaries.
            choice = [0] * (n + 1)
            for i in range(n, 0, -1):
                choice[i - 1] = best[i][choice[i]][1]
            for i in range(1, n + 1):
                body = options[i - 1][choice[i - 1]][1]
                coda = options[i][choice[i]][0]
                result.append(self.table[(body, coda)] + _TONE_OF_CHAO[syllables[i - 1][1]])
        return result


# --------------------------------------------------------------------------------------------------
# Signal processing: speed perturbation + resampling, noise, mixing.


@lru_cache(maxsize=16)
def _lowpass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing filter ``scipy.signal.resample_poly`` designs, cached (design dominates cost)."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample(samples: np.ndarray, from_rate: int, to_rate: int, speed: float = 1.0) -> np.ndarray:
    """Resample to ``to_rate`` and change speed by ``speed`` (>1 faster), as ``sox speed`` does.

    Speed perturbation here changes tempo and pitch together (Kaldi's 3-way speed perturbation):
    the input is treated as if it had been recorded at ``from_rate * speed``. Returns float64.
    """
    from scipy.signal import resample_poly

    ratio = Fraction(to_rate) / (Fraction(from_rate) * Fraction(str(speed)))
    ratio = ratio.limit_denominator(5000)
    up, down = ratio.numerator, ratio.denominator
    x = np.asarray(samples, dtype=np.float64)
    if up == down:
        return x.copy()
    return resample_poly(x, up, down, window=_lowpass(up, down))


def make_noise(kind: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise: ``white`` (flat spectrum) or ``pink`` (power ∝ 1/f, shaped in the FFT domain)."""
    if kind == "white":
        noise = rng.standard_normal(num_samples)
    elif kind == "pink":
        from scipy.fft import next_fast_len

        n_fft = next_fast_len(num_samples, real=True)  # odd lengths make the FFT several times slower
        spec = np.fft.rfft(rng.standard_normal(n_fft))
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0  # no DC boost
        noise = np.fft.irfft(spec / np.sqrt(f), n=n_fft)[:num_samples]
    else:
        raise SenoneError(f"unknown noise kind {kind!r}; use 'white' or 'pink'")
    noise -= noise.mean()
    power = float(np.mean(noise**2))
    return noise / np.sqrt(power) if power > 0 else noise


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float, signal_power: float | None = None) -> np.ndarray:
    """Add ``noise`` scaled so that signal power / noise power = ``snr_db``.

    ``signal_power`` defaults to the mean power of ``signal``; pass the power of the speech alone
    when ``signal`` carries added silence, so padding does not lower the effective SNR.
    """
    if signal_power is None:
        signal_power = float(np.mean(np.asarray(signal, dtype=np.float64) ** 2))
    noise_power = float(np.mean(noise**2))
    if noise_power == 0 or signal_power == 0:
        return np.asarray(signal, dtype=np.float64).copy()
    gain = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return signal + gain * noise


@dataclass(frozen=True)
class RenderSpec:
    """Everything that determines one synthetic utterance's audio (so it can be re-rendered exactly).

    Attributes:
        text: what espeak reads.
        voice: the speaker.
        speed: speed-perturbation factor (1.0 = none).
        noise: ``"white"``, ``"pink"`` or ``"none"``.
        snr_db: speech-to-noise power ratio, the speech power measured without the padding.
        noise_seed: seeds the noise samples.
        lead_s, trail_s: silence added before/after the speech (noise fills it), in seconds.
        gain_db: gain applied to espeak's output (full scale = 0 dB) before noise; the result is
            scaled down further only if it would clip.
    """

    text: str
    voice: EspeakVoice
    speed: float = 1.0
    noise: str = "none"
    snr_db: float = 20.0
    noise_seed: int = 0
    lead_s: float = 0.0
    trail_s: float = 0.0
    gain_db: float = -6.0


def has_speech(samples: np.ndarray, sample_rate: int, min_seconds: float = 0.05, min_peak: int = 200) -> bool:
    """False for espeak output that holds no speech.

    For text it cannot read (empty, symbols only) espeak returns a few milliseconds of silence
    rather than nothing, so "no audio" means: shorter than ``min_seconds`` or never louder than
    ``min_peak`` (int16 scale; espeak's speech peaks at 10,000-32,000).
    """
    if samples.size < min_seconds * sample_rate:
        return False
    return int(np.max(np.abs(samples.astype(np.int32)))) >= min_peak


def render(spec: RenderSpec, synthesizer: EspeakSynthesizer, sample_rate: int = 16000, clean: bool = False) -> np.ndarray:
    """Render one utterance to int16 samples at ``sample_rate``; empty if espeak said nothing
    (see ``has_speech``).

    With ``clean=True`` the same utterance is returned without noise (and without the anti-clipping
    scale), which lets a caller measure the realised SNR.
    """
    raw = synthesizer.synthesize(spec.text, spec.voice, rand_seed=spec.noise_seed)
    if not has_speech(raw, synthesizer.sample_rate):
        return np.zeros(0, dtype=np.int16)
    speech = resample(raw, synthesizer.sample_rate, sample_rate, spec.speed)
    speech *= 10.0 ** (spec.gain_db / 20.0) / 32768.0
    lead = int(round(spec.lead_s * sample_rate))
    trail = int(round(spec.trail_s * sample_rate))
    x = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    if spec.noise != "none" and not clean:
        rng = np.random.default_rng(spec.noise_seed)
        noise = make_noise(spec.noise, x.size, rng)
        x = mix_at_snr(x, noise, spec.snr_db, signal_power=float(np.mean(speech**2)))
        peak = float(np.max(np.abs(x)))
        if peak > 0.99:
            x *= 0.99 / peak
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str = "flac") -> bytes:
    """Encode int16 samples as 16-bit FLAC or WAV bytes (deterministic for the same input)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# Parallel rendering: one EspeakSynthesizer per worker process.

_worker_synth: EspeakSynthesizer | None = None


def _worker_init() -> None:
    global _worker_synth
    _worker_synth = EspeakSynthesizer()


def _render_item(args: tuple[str, RenderSpec, int, str]) -> tuple[str, bytes, int]:
    item_id, spec, sample_rate, fmt = args
    global _worker_synth
    if _worker_synth is None:
        _worker_synth = EspeakSynthesizer()
    try:
        samples = render(spec, _worker_synth, sample_rate)
    except SenoneError as e:
        raise SenoneError(f"{item_id}: {e}") from None
    except Exception as e:  # name the item: a bare traceback from a worker says nothing useful
        raise SenoneError(f"{item_id}: synthesis failed ({type(e).__name__}: {e})") from None
    if samples.size == 0:
        return item_id, b"", 0
    return item_id, encode_audio(samples, sample_rate, fmt), int(samples.size)


class RenderPool:
    """Render utterances in ``num_jobs`` worker processes, results in submission order.

    Because every utterance is a pure function of its ``RenderSpec``, the output does not depend on
    ``num_jobs`` or on how work is spread over the workers.
    """

    def __init__(self, num_jobs: int = 1, sample_rate: int = 16000, fmt: str = "flac"):
        self.num_jobs = max(1, int(num_jobs))
        self.sample_rate = sample_rate
        self.fmt = fmt
        self._pool = None
        if self.num_jobs > 1:
            import multiprocessing

            self._pool = multiprocessing.get_context("fork").Pool(self.num_jobs, initializer=_worker_init)

    def imap(self, items: Sequence[tuple[str, RenderSpec]]) -> Iterator[tuple[str, bytes, int]]:
        """Render ``(item_id, spec)`` pairs; yields ``(item_id, encoded audio, num_samples)`` in order.

        Results stream back while later items are still rendering. An utterance espeak produced no
        audio for comes back with ``num_samples == 0``; an espeak failure raises ``SenoneError``
        naming the item.
        """
        args = [(item_id, spec, self.sample_rate, self.fmt) for item_id, spec in items]
        if self._pool is None:
            return (_render_item(a) for a in args)
        chunk = max(1, min(8, len(args) // (4 * self.num_jobs)))
        return self._pool.imap(_render_item, args, chunksize=chunk)

    def map(self, items: Sequence[tuple[str, RenderSpec]]) -> list[tuple[str, bytes, int]]:
        """``imap`` collected into a list."""
        return list(self.imap(items))

    def close(self) -> None:
        """Stop the workers. Items of an abandoned ``imap`` that are still rendering are dropped."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> "RenderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
