"""MFCC and log-mel (+ Kaldi-style pitch) extraction into Lhotse feature storage.

Two extractors share one framing, power spectrum, log-energy and pitch path (:class:`SpectralPitch`):
:class:`MfccPitch` for the GMM stages and :class:`FbankPitch` (log-mel bands + energy) for the
networks, so both kinds have the same frames. Both are Lhotse ``FeatureExtractor`` s and every cut
gets Lhotse's ``Features`` manifest, so every later stage reads features with ``cut.load_features()``.
:func:`compute_features` runs its own loop over the cuts instead of Lhotse's
``CutSet.compute_and_store_features``: it featurises the cuts in batches (the pitch tracker's
Viterbi search runs once per batch: 1.8× faster on 2–3 s cuts) and names each stored matrix by its
cut id (Lhotse names them with random UUIDs), so the archives are the same from run to run.

Storage: Lhotse's ``KaldiWriter`` — a Kaldi ``feats.ark`` + ``feats.scp`` per job, written through
kaldi-native-io. Why: Kaldi tools (``copy-feats``, ``compute-cmvn-stats``) read it as is, one
archive per job instead of one file per utterance, and no extra dependency (``lilcom`` and
``h5py`` are not installed; Lhotse's ``numpy_files`` writes one file per cut). Compression is
Kaldi's ``kTwoByteAuto`` (16-bit codes between the matrix's min and max): half the size of float32
with a quantisation step of range/65535 (about 1e-3 for MFCC+pitch), far below anything a GMM or
network can resolve. Kaldi's own default (``kSpeechFeature``, 8 bits per value) would be another
2× smaller but coarser. Paths in ``feats.scp`` and in the cuts are the paths given (keep them
relative to the recipe's root, as Kaldi does, so the folder stays movable with its recipe).
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from lhotse import CutSet
from lhotse.features.base import FeatureExtractor, register_extractor
from lhotse.features.io import KaldiWriter

from senone import SenoneError
from senone.feats.pitch import PitchOptions, compute_pitch_batch, num_frames
from senone.io import atomic_path

log = logging.getLogger(__name__)

#: Kaldi ``CompressionMethod.kTwoByteAuto`` (see the module docstring).
KALDI_TWO_BYTE_AUTO = 3


@dataclass
class FrameOptions:
    """What both feature kinds share (Kaldi's option names): framing, pre-emphasis, mel range,
    log-energy and pitch. One set of values for both keeps their frames identical.

    ``high_freq=-400`` and ``dither=0`` follow Lhotse (``dither=0`` keeps features deterministic);
    sample values are in [-1, 1] (Kaldi uses the int16 scale), which only shifts the log-energy
    and log-mel values by a constant that CMVN removes.
    """

    frame_shift: float = 0.01
    frame_length: float = 0.025
    low_freq: float = 20.0
    high_freq: float = -400.0
    preemph_coeff: float = 0.97
    use_energy: bool = True
    energy_floor: float = 1e-10
    dither: float = 0.0
    pitch: bool = True
    min_f0: float = 50.0
    max_f0: float = 400.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return cls(**data)


@dataclass
class MfccPitchConfig(FrameOptions):
    """MFCC options (Kaldi's ``compute-mfcc-feats`` names and defaults, except where noted) + pitch.

    ``use_energy=True`` is Kaldi's binary default (C0 replaced by the log-energy of the frame,
    computed before pre-emphasis and windowing). Kaldi's Mandarin recipes set
    ``--use-energy=false`` in ``conf/mfcc.conf``; with per-speaker mean normalisation the two
    differ little.
    """

    num_ceps: int = 13
    num_filters: int = 23
    cepstral_lifter: int = 22


@dataclass
class FbankPitchConfig(FrameOptions):
    """Log-mel options (Kaldi's ``compute-fbank-feats`` names) + pitch: the network features.

    Defaults are the reference paper's input: 30 bands + the log-energy, no pitch.
    """

    num_mel_bins: int = 30
    pitch: bool = False


def frame_log_energy(samples: np.ndarray, sampling_rate: int, frame_shift: float, frame_length: float, floor: float) -> np.ndarray:
    """Kaldi's raw log-energy per frame (DC removed, before pre-emphasis/window), Lhotse framing.

    Lhotse's ``snip_edges=False`` framing pads ``(length - shift) // 2`` samples on the left and
    the rest on the right by mirroring the signal (edge sample included), so frame ``t`` covers
    ``[t*shift - pad, t*shift - pad + length)``.
    """
    shift = int(round(frame_shift * sampling_rate))
    length = int(round(frame_length * sampling_rate))
    n = num_frames(len(samples), sampling_rate, frame_shift)
    if len(samples) < length:
        raise SenoneError(f"frame_log_energy: {len(samples)} samples is shorter than one frame ({length})")
    pad_left = (length - shift) // 2
    pad_right = (n - 1) * shift + length - len(samples) - pad_left
    x = np.asarray(samples, dtype=np.float32)
    parts = [x[:pad_left][::-1], x]
    if pad_right > 0:
        parts.append(x[len(x) - pad_right :][::-1])
    xp = np.concatenate(parts)
    frames = np.lib.stride_tricks.as_strided(xp, shape=(n, length), strides=(shift * xp.itemsize, xp.itemsize), writeable=False)
    total = frames.sum(axis=1, dtype=np.float64)
    energy = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) - total * total / length
    return np.log(np.maximum(energy, floor)).astype(np.float32)


def _power_spectrum(spec):
    """``|X|²`` as ``Re² + Im²``: Lhotse's ``X.abs() ** 2`` to float rounding (about 1e-5 in the MFCCs).

    Why: Lhotse's version takes a square root and squares it again; torch's complex ``abs`` was the
    largest single cost of the MFCC (about 3× slower than this on one core).
    """
    return spec.real.square() + spec.imag.square()


class SpectralPitch(FeatureExtractor):
    """What the MFCC and log-mel extractors share: Lhotse's Kaldi-compatible framing and power
    spectrum (torch, one thread, ``|X|²`` without a square root), Kaldi's raw log-energy column
    (:func:`frame_log_energy`) and the batched pitch tracker, appended as 3 columns.

    Sharing this is what keeps the network features frame-synchronous with the GMM features:
    every subclass frames with the same ``snip_edges=False`` rule (frame count
    ``(n + shift // 2) // shift``), so per-frame GMM alignments index the network frames too.
    A subclass says which Lhotse extractor computes its spectral columns (:meth:`_make_spectral`)
    and where the log-energy goes (:meth:`_with_energy`).
    """

    #: what the progress bar calls the features
    description = "features"

    def __init__(self, config=None):
        super().__init__(config=config)
        self._spectral: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # workers rebuild the torch modules themselves
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._spectral = {}

    @property
    def frame_shift(self) -> float:
        return self.config.frame_shift

    @property
    def pitch_options(self) -> PitchOptions:
        c = self.config
        return PitchOptions(frame_shift=c.frame_shift, frame_length=c.frame_length, min_f0=c.min_f0, max_f0=c.max_f0)

    @property
    def progress_label(self) -> str:
        return f"{self.description} + pitch" if self.config.pitch else self.description

    def _make_spectral(self, sampling_rate: int):
        """Lhotse's extractor for the spectral columns, without its energy option."""
        raise NotImplementedError

    def _lhotse_options(self, sampling_rate: int) -> dict[str, Any]:
        """The options of Lhotse's Kaldi-compatible extractors that both kinds set alike."""
        c = self.config
        return dict(sampling_rate=sampling_rate, frame_length=c.frame_length, frame_shift=c.frame_shift,
                    preemph_coeff=c.preemph_coeff, dither=c.dither, energy_floor=c.energy_floor,
                    use_energy=False, low_freq=c.low_freq, high_freq=c.high_freq)

    def _with_energy(self, spectral: np.ndarray, log_energy: np.ndarray) -> np.ndarray:
        """The spectral columns with the log-energy column put in its place."""
        raise NotImplementedError

    def _spectral_extractor(self, sampling_rate: int):
        if sampling_rate not in self._spectral:
            from lhotse.features.kaldi import layers

            extractor = self._make_spectral(sampling_rate)
            module = extractor.extractor
            if getattr(module, "_to_spec", None) is layers._pow_spectrogram:
                module._to_spec = _power_spectrum  # same values, see _power_spectrum
            self._spectral[sampling_rate] = extractor
        return self._spectral[sampling_rate]

    def _spectral_single_thread(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        # One utterance is too small a job for torch's thread pool, and when the cores are busy
        # (parallel jobs, other processes) OpenMP's waiting made Lhotse's MFCC 50-100× slower here.
        import torch

        threads = torch.get_num_threads()
        if threads != 1:
            torch.set_num_threads(1)
        try:
            return self._spectral_extractor(sampling_rate).extract(samples, sampling_rate)
        finally:
            if threads != 1:
                torch.set_num_threads(threads)

    def check_samples(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        """The mono float32 signal of ``samples`` (1-D or 1 × N); :class:`SenoneError` if unusable."""
        name = type(self).__name__
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2:
            if samples.shape[0] != 1:
                raise SenoneError(f"{name}: expected mono audio, got {samples.shape[0]} channels")
            samples = samples[0]
        if len(samples) < int(round(self.config.frame_length * sampling_rate)):
            # (Lhotse's mirror padding also fails below about half a window)
            raise SenoneError(f"{name}: audio shorter than one {self.config.frame_length * 1000:.0f} ms frame ({len(samples)} samples)")
        if not np.all(np.isfinite(samples)):
            raise SenoneError(f"{name}: audio contains NaN or infinite samples")
        return samples

    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        return self.extract_many([samples], sampling_rate)[0]

    def extract_many(self, signals: list[np.ndarray], sampling_rate: int) -> list[np.ndarray]:
        """:meth:`extract` for several utterances: the same features, less time per utterance.

        The pitch tracker's Viterbi search runs once for the whole list (see
        :func:`senone.feats.pitch.track_pitch_batch`); the spectral columns are computed one by one.
        """
        signals = [self.check_samples(x, sampling_rate) for x in signals]
        c = self.config
        out = []
        for samples in signals:
            feats = np.asarray(self._spectral_single_thread(samples, sampling_rate), dtype=np.float32)
            if c.use_energy:
                log_e = frame_log_energy(samples, sampling_rate, c.frame_shift, c.frame_length, c.energy_floor)
                feats = self._with_energy(feats, log_e)
            out.append(feats)
        if not c.pitch:
            return out
        pitches = compute_pitch_batch(signals, sampling_rate, self.pitch_options)
        for i, (feats, pitch) in enumerate(zip(out, pitches)):
            if len(pitch) != len(feats):  # cannot happen unless Lhotse changes its framing
                raise SenoneError(f"{type(self).__name__}: {len(feats)} spectral frames but {len(pitch)} pitch "
                                  "frames; framing mismatch")
            out[i] = np.concatenate([feats, pitch], axis=1)
        return out


@register_extractor
class MfccPitch(SpectralPitch):
    """13 MFCCs (C0 = log-energy by default) followed by 3 Kaldi pitch features: T × 16 (or T × 13).

    Column order as Kaldi's ``paste-feats`` of MFCC and processed pitch:
    ``[C0/log-energy, C1..C12, POV feature, normalised log-pitch, delta log-pitch]``.

    MFCCs come from Lhotse's Kaldi-compatible ``Mfcc`` (torch); its ``use_energy=True`` path fails
    in Lhotse 1.33 (it indexes the batch axis), so the energy column is computed here with the same
    framing instead. Pitch comes from :mod:`senone.feats.pitch` and has the same frame count.
    """

    name = "senone-mfcc-pitch"
    config_type = MfccPitchConfig
    description = "MFCC"

    def feature_dim(self, sampling_rate: int) -> int:
        return self.config.num_ceps + (3 if self.config.pitch else 0)

    def _make_spectral(self, sampling_rate: int):
        from lhotse.features.kaldi.extractors import Mfcc, MfccConfig

        c = self.config
        return Mfcc(MfccConfig(**self._lhotse_options(sampling_rate), num_filters=c.num_filters, num_ceps=c.num_ceps,
                               cepstral_lifter=c.cepstral_lifter))

    def _with_energy(self, spectral: np.ndarray, log_energy: np.ndarray) -> np.ndarray:
        spectral[:, 0] = log_energy  # Kaldi's --use-energy: C0 replaced by the log-energy
        return spectral


@register_extractor
class FbankPitch(SpectralPitch):
    """Log-mel filterbank energies (+ log-energy) (+ 3 Kaldi pitch features): the network input.

    Columns: ``[log-energy, mel band 1 .. mel band N, POV feature, normalised log-pitch, delta
    log-pitch]`` — T × (N + 1 + 3) with the defaults of ``features.nn`` and pitch, T × 31 without.

    **Energy first**, as Kaldi's ``compute-fbank-feats --use-energy`` (and Lhotse's ``Fbank``)
    put it: the column is then exactly the GMM features' C0 (the same :func:`frame_log_energy`),
    and the 30 mel bands stay contiguous in ascending frequency after it, so a convolution over
    frequency sees the energy as one more edge band, next to the lowest mel band.

    The mel bands are Lhotse's ``Wav2LogFilterBank`` (Kaldi's mel banks, povey window,
    pre-emphasis 0.97, ``log(max(mel energy, float eps))``), with this project's power spectrum.
    """

    name = "senone-fbank-pitch"
    config_type = FbankPitchConfig
    description = "log-mel"

    def feature_dim(self, sampling_rate: int) -> int:
        c = self.config
        return c.num_mel_bins + (1 if c.use_energy else 0) + (3 if c.pitch else 0)

    def _make_spectral(self, sampling_rate: int):
        from lhotse.features.kaldi.extractors import Fbank, FbankConfig

        return Fbank(FbankConfig(**self._lhotse_options(sampling_rate), num_filters=self.config.num_mel_bins))

    def _with_energy(self, spectral: np.ndarray, log_energy: np.ndarray) -> np.ndarray:
        return np.concatenate([log_energy[:, None], spectral], axis=1)


#: Extractor class for each configuration type (``compute_features`` picks by the config it gets).
EXTRACTORS: dict[type, type[SpectralPitch]] = {MfccPitchConfig: MfccPitch, FbankPitchConfig: FbankPitch}


def extractor_for(config: "MfccPitchConfig | FbankPitchConfig") -> SpectralPitch:
    """The extractor of a configuration: :class:`MfccPitch` or :class:`FbankPitch`."""
    try:
        return EXTRACTORS[type(config)](config)
    except KeyError:
        raise SenoneError(f"no feature extractor for a {type(config).__name__}; expected one of "
                          f"{', '.join(t.__name__ for t in EXTRACTORS)}") from None


class KaldiTwoByteWriter(KaldiWriter):
    """Lhotse's ``KaldiWriter`` with Kaldi's ``kTwoByteAuto`` compression (read by ``KaldiReader``)."""

    def __init__(self, storage_path, *args, **kwargs):
        super().__init__(storage_path, compression_method=KALDI_TWO_BYTE_AUTO)


def _init_worker() -> None:
    # one torch thread per process: the pool already uses every core
    import torch

    torch.set_num_threads(1)


def _audio_problem(cut, sampling_rate: int | None, min_duration: float) -> str | None:
    """Why a cut cannot be featurised, from its manifest alone (no audio decoding), or None."""
    if not cut.has_recording:
        return "no recording"
    if sampling_rate is not None and cut.sampling_rate != sampling_rate:
        return f"sampling rate {cut.sampling_rate} Hz, expected {sampling_rate} Hz (resample the recordings)"
    if cut.num_channels != 1:
        return f"{cut.num_channels} channels; make one cut per channel"
    if cut.duration < min_duration:
        return f"duration {cut.duration:.3f} s is below {min_duration} s"
    for source in cut.recording.sources:
        if source.type == "file" and not Path(source.source).is_file():
            return f"audio file {source.source} not found"
    return None


def _load_checked(extractor: SpectralPitch, cut) -> tuple[np.ndarray | None, str | None]:
    """One cut's mono samples, checked: (samples, None), or (None, reason) for unusable audio."""
    try:
        samples = cut.load_audio()
    except Exception as e:  # corrupt/truncated files: soundfile, audioread and Lhotse raise many types
        first = str(e).splitlines()[0] if str(e) else ""
        return None, f"audio unreadable ({type(e).__name__}: {first[:150]})"
    try:
        return extractor.check_samples(samples, cut.sampling_rate), None
    except SenoneError as e:
        return None, str(e)


def skipped_cut_ids(out_dir: str | Path, split: str) -> list[str]:
    """Ids of the cuts :func:`compute_features` skipped for ``split`` (``skipped_<split>.txt``; none if absent).

    Later stages tell a cut that exists but has no features from one that is not in the split at all.
    """
    path = Path(out_dir) / f"skipped_{split}.txt"
    if not path.is_file():
        return []
    return [line.split("\t", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def compute_features(
    cuts: CutSet,
    out_dir: str | Path,
    *,
    split: str,
    pitch: bool,
    num_jobs: int = 1,
    config: MfccPitchConfig | FbankPitchConfig | None = None,
    sampling_rate: int | None = None,
    min_duration: float = 0.025,
) -> CutSet:
    """Extract features for ``cuts`` and write ``out_dir/cuts_<split>.jsonl.gz`` (atomically).

    The kind of features follows ``config``: MFCC(+pitch) for a :class:`MfccPitchConfig` (the
    default), log-mel(+pitch) for a :class:`FbankPitchConfig`; ``pitch`` overrides the config's.
    Features go to ``out_dir/feats_<split>/`` (Kaldi ark/scp, one archive per job). Resumable: when
    the cuts file already exists it is loaded and returned without recomputing; a run killed half
    way leaves no cuts file, and its partial feature folder is removed on the next run.

    Cuts whose audio cannot be used — missing file, wrong sampling rate (when ``sampling_rate`` is
    given), several channels, shorter than ``min_duration``, unreadable/corrupt or empty audio — are
    skipped, logged with a count and listed in ``out_dir/skipped_<split>.txt`` (cut id, reason).
    :class:`SenoneError` when no cut is left.

    ``num_jobs > 1`` splits the cuts into ``num_jobs`` shares for a process pool (spawned workers,
    one torch thread each, one archive each). Each worker first spends seconds importing
    torch/Lhotse: on this 2-core machine 8 minutes of 5 s cuts took 0.5 s with 1 job and 3.2 s with
    2, so parallel jobs pay off only for corpora of hours.
    """
    out_dir = Path(out_dir)
    cuts_path = out_dir / f"cuts_{split}.jsonl.gz"
    skip_path = out_dir / f"skipped_{split}.txt"
    if cuts_path.is_file():
        log.info("%s exists; features for split %s are done", cuts_path, split)
        return CutSet.from_file(cuts_path)
    if config is None:
        config = MfccPitchConfig(pitch=pitch)
    elif config.pitch != pitch:
        config = replace(config, pitch=pitch)
    extractor = extractor_for(config)

    skipped: list[tuple[str, str]] = []
    good_ids = []
    for cut in cuts:
        problem = _audio_problem(cut, sampling_rate, min_duration)
        if problem is None:
            good_ids.append(cut.id)
        else:
            skipped.append((cut.id, problem))
    usable = cuts.subset(cut_ids=good_ids) if skipped else cuts

    storage = out_dir / f"feats_{split}"
    if storage.exists():
        shutil.rmtree(storage)  # left by an interrupted run: its cuts file was never written
    storage.mkdir(parents=True)

    executor = None
    if num_jobs > 1:
        executor = ProcessPoolExecutor(num_jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    try:
        done, unreadable = _compute_and_store(usable, extractor, storage, num_jobs, executor)
    finally:
        if executor is not None:
            executor.shutdown()
    skipped.extend(unreadable)

    with atomic_path(skip_path) as tmp:
        tmp.write_text("".join(f"{cid}\t{why}\n" for cid, why in skipped), encoding="utf-8")
    if skipped:
        example = f"{skipped[0][0]} ({skipped[0][1]})"
        log.warning("split %s: skipped %d of %d cuts (e.g. %s); list in %s", split, len(skipped), len(cuts), example, skip_path)
    if len(done) == 0:
        raise SenoneError(f"{skip_path}: no cut of split {split!r} could be featurised; see the reasons listed there")

    with atomic_path(cuts_path) as tmp:
        done.to_file(tmp)
    log.info("split %s: features for %d cuts in %s", split, len(done), storage)
    return done


def _compute_and_store(
    cuts: CutSet, extractor: SpectralPitch, storage: Path, num_jobs: int, executor
) -> tuple[CutSet, list[tuple[str, str]]]:
    """Features for ``cuts`` into ``storage``: (cuts with features in input order, [(cut id, reason)]).

    One job writes ``storage/feats.ark``; ``num_jobs > 1`` splits the cuts into contiguous shares,
    one archive ``storage/feats-<i>/feats.ark`` each (Lhotse's layout for parallel jobs).
    """
    if num_jobs <= 1 or executor is None:
        done, skipped = _featurise(list(cuts), extractor, storage, progress=True)
    else:
        shares = [s for s in cuts.split(num_jobs) if len(s)]
        futures = [
            executor.submit(_featurise, list(share), extractor, storage / f"feats-{i}", False)
            for i, share in enumerate(shares)
        ]
        done, skipped = [], []
        for future in futures:
            d, s = future.result()
            done.extend(d)
            skipped.extend(s)
    return CutSet.from_cuts(done), skipped


#: Audio samples per batch of utterances (2 minutes at 16 kHz): enough for the pitch tracker's
#: batched Viterbi to spend little time in Python, small enough to stay in the CPU caches.
BATCH_SAMPLES = 2 * 60 * 16000


def _featurise(
    cuts: list, extractor: SpectralPitch, storage: Path, progress: bool, batch_samples: int = BATCH_SAMPLES
) -> tuple[list, list[tuple[str, str]]]:
    """Featurise ``cuts`` in batches into one Kaldi archive in ``storage``; (done cuts, skips).

    Why not Lhotse's ``CutSet.compute_and_store_features``: it calls the extractor one cut at a
    time, which keeps the pitch tracker from batching its Viterbi search (a third of the run time
    on 2–3 s cuts), and names every matrix with a random UUID, so two runs wrote different
    archives. Here a matrix is stored under its cut id (Kaldi's utterance id), and every cut gets
    the ``Features`` manifest Lhotse's own path gives it.
    """
    from lhotse.features import Features
    from lhotse.qa import validate_features
    from lhotse.utils import fastcopy
    from tqdm import tqdm

    import torch

    done, skipped = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see SpectralPitch._spectral_single_thread
    try:
        with KaldiTwoByteWriter(storage) as writer:

            def flush(batch: list) -> None:
                if not batch:
                    return
                feats = extractor.extract_many([x for _, x in batch], batch[0][0].sampling_rate)
                for (cut, samples), f in zip(batch, feats):
                    key = writer.write(_storage_key(cut.id), f)
                    manifest = Features(
                        type=extractor.name,
                        num_frames=f.shape[0],
                        num_features=f.shape[1],
                        frame_shift=extractor.frame_shift,
                        sampling_rate=cut.sampling_rate,
                        start=cut.start,
                        duration=round(len(samples) / cut.sampling_rate, ndigits=8),
                        storage_type=writer.name,
                        storage_path=str(writer.storage_path),
                        storage_key=key,
                        channels=cut.channel,
                    )
                    validate_features(manifest, feats_data=f)
                    done.append(fastcopy(cut, features=manifest))
                batch.clear()

            batch: list = []
            size = 0
            for cut in tqdm(cuts, desc=extractor.progress_label, unit="cut", disable=not progress):
                samples, problem = _load_checked(extractor, cut)
                if problem is not None:
                    skipped.append((cut.id, problem))
                    continue
                if batch and (size >= batch_samples or cut.sampling_rate != batch[0][0].sampling_rate):
                    flush(batch)
                    size = 0
                batch.append((cut, samples))
                size += len(samples)
            flush(batch)
    finally:
        torch.set_num_threads(threads)
    return done, skipped


def _storage_key(cut_id: str) -> str:
    """The cut id as a Kaldi utterance id; a name derived from it when it has whitespace."""
    if cut_id and not any(ch.isspace() for ch in cut_id):
        return cut_id
    return "cut-" + uuid.uuid5(uuid.NAMESPACE_URL, cut_id).hex
