"""hkust: the HKUST/MTS Mandarin telephone corpus (LDC2005S15 audio, LDC2005T32 transcripts), read in place."""
