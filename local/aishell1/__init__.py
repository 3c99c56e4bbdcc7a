"""aishell1: the open AISHELL-1 Mandarin corpus (OpenSLR 33) through Lhotse's recipe, local or downloaded."""
