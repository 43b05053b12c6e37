"""Harmonic-plus-noise synthesis from per-frame controls: the DSP half of the "hn" vocoder.

Frame j (of the mel grid, hop 256) is centred at c_j = j*hop + hop/2. The signal between two frame
centres, the *segment* j = [c_{j-1}, c_j), depends only on the controls of frames j-1 and j:

* harmonic part: f0 is interpolated linearly between the two centres (an unvoiced end takes the
  voiced end's f0, its amplitudes are zero), the phase is integrated per sample from that f0 and
  carried from segment to segment (the only state), and harmonic k sounds sin(k * phase) with an
  amplitude interpolated linearly between the two frames' amplitudes; harmonics at or above the
  alias limit of the higher f0 are silenced;
* noise part: every frame owns 2*hop samples of white noise around its centre, filtered by that
  frame's magnitude response (zero phase, in the FFT domain) and Hann-windowed; windows at 50 %
  overlap sum to one, so a segment is the second half of frame j-1 plus the first half of frame j.
  The white noise is a pure function of the absolute sample index (a splitmix64 hash, like
  models/noise.py), so a file rendered whole, in pieces or live draws the same noise.

Rendering a file of T frames uses controls for frames -1 .. T (the first and last frame repeated):
segments 0 .. T cover samples [-hop/2, T*hop + hop/2), of which [0, T*hop) is kept. Because each
segment is local, a stream renders segment j as soon as frame j's controls exist and equals the
whole-file render up to float rounding of the carried phase.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from models.noise import _splitmix64

NOISE_SEED = 0x4E4F495345  # separates this noise from the decoder's frame noise
ALIAS_LIMIT = 0.47  # harmonics must stay below this fraction of the sample rate
TABLE_SIZE = 2048  # wavetable points per period (linear interpolation error < 1 % at harmonic 96)


def white_noise(start: int, n: int, offsets: np.ndarray | None = None) -> torch.Tensor:
    """Unit-variance uniform noise for absolute samples start .. start+n-1 -> [B, n] (B = len(offsets), or 1).

    `offsets` shift the sample index per batch item (training draws different noise per item)."""
    offs = np.zeros(1, np.int64) if offsets is None else np.asarray(offsets, np.int64)
    idx = (np.arange(start, start + n, dtype=np.int64)[None, :] + offs[:, None]).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _splitmix64(idx * np.uint64(2) + np.uint64(NOISE_SEED))
    u = (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))  # [0, 1)
    return torch.from_numpy((u - np.float32(0.5)) * np.float32(math.sqrt(12.0)))


class HNSynth:
    """Stateless renderer of segments from controls (the phase is passed in and returned)."""

    def __init__(self, sample_rate: int, hop: int, n_harmonics: int):
        self.sr, self.hop, self.k = int(sample_rate), int(hop), int(n_harmonics)
        self.n_fft = 2 * self.hop
        self.n_bins = self.hop + 1
        self.window = torch.hann_window(self.n_fft, periodic=True)
        self.ramp = torch.arange(self.hop, dtype=torch.float64) / self.hop  # position inside a segment
        self.harm = torch.arange(1, self.k + 1, dtype=torch.float32)
        self.table_size = TABLE_SIZE

    def wavetables(self, amps: torch.Tensor) -> torch.Tensor:
        """Harmonic amplitudes [..., K] -> one period of sum_k a_k sin(k x) at TABLE_SIZE points, plus the wrap point."""
        n = self.table_size
        spec = amps.new_zeros(*amps.shape[:-1], n // 2 + 1)
        spec = torch.cat([spec[..., :1], amps, spec[..., self.k + 1:]], -1) * (n / 2)
        table = torch.fft.irfft(torch.complex(torch.zeros_like(spec), -spec), n=n, dim=-1)
        return torch.cat([table, table[..., :1]], -1)

    def render(self, f0: torch.Tensor, amps: torch.Tensor, noise_mag: torch.Tensor, first_segment: int,
               phase0: torch.Tensor | None = None, noise_offsets: np.ndarray | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Segments first_segment .. first_segment+S-1 from the controls of frames first_segment-1 .. +S-1.

        f0 [B, S+1] Hz (0 = unvoiced); amps [B, S+1, K] linear harmonic amplitudes (already zero where
        unvoiced); noise_mag [B, S+1, hop+1] linear magnitude response; phase0 [B] float64 (radians,
        the phase of the sample before the first one; zeros when None).
        Returns (audio [B, S*hop], phase of the last sample [B] float64)."""
        b, s1 = f0.shape
        s, hop = s1 - 1, self.hop
        if s <= 0:
            return amps.new_zeros(b, 0), (phase0 if phase0 is not None else torch.zeros(b, dtype=torch.float64))
        if phase0 is None:
            phase0 = torch.zeros(b, dtype=torch.float64)
        # ---- harmonic part
        f = f0.detach().to(torch.float64)
        fa, fb = f[:, :-1], f[:, 1:]
        fa, fb = torch.where(fa > 0, fa, fb), torch.where(fb > 0, fb, fa)
        inst = fa[..., None] + (fb - fa)[..., None] * self.ramp  # [B, S, hop] Hz
        phase = torch.cumsum((2 * math.pi / self.sr) * inst.reshape(b, -1), dim=1) + phase0[:, None]
        phase = torch.remainder(phase, 2 * math.pi)
        phase_end = phase[:, -1].clone()
        fmax = torch.maximum(fa, fb).to(torch.float32)  # [B, S]
        keep = (self.harm * fmax[..., None] < ALIAS_LIMIT * self.sr).to(amps.dtype)  # [B, S, K]
        ends = torch.stack([amps[:, :-1] * keep, amps[:, 1:] * keep], dim=2)  # [B, S, 2, K]
        tables = self.wavetables(ends)  # [B, S, 2, N + 1]
        u = phase.to(torch.float32).view(b, s, 1, hop) * (self.table_size / (2 * math.pi))
        i0 = u.floor().clamp(0, self.table_size - 1)
        frac = u - i0
        i0 = i0.long().expand(b, s, 2, hop)
        lo, hi = tables.gather(-1, i0), tables.gather(-1, i0 + 1)
        both = lo + (hi - lo) * frac  # [B, S, 2, hop]: each end's waveform at this segment's phases
        a = self.ramp.to(torch.float32)
        harmonic = both[:, :, 0] * (1 - a) + both[:, :, 1] * a
        # ---- noise part: frame i (local) owns samples [c - hop, c + hop) around its centre
        start = (first_segment - 1) * hop + hop // 2 - hop  # first sample of local frame 0's window
        w = white_noise(start, (s + 2) * hop, noise_offsets)
        if w.shape[0] != b:
            w = w.expand(b, -1)
        frames = w.unfold(1, self.n_fft, hop)  # [B, S+1, 2*hop]
        spec = torch.fft.rfft(frames, dim=-1) * noise_mag
        noise = torch.fft.irfft(spec, n=self.n_fft, dim=-1) * self.window  # [B, S+1, 2*hop]
        noise = noise[:, :-1, hop:] + noise[:, 1:, :hop]  # [B, S, hop]
        return (harmonic + noise).reshape(b, s * hop), phase_end
