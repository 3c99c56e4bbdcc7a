# senone workflow: one rule per stage, each calling one steps/ CLI. Configuration: conf/*.yaml, overridden by
# recipes/<recipe>.yaml, overridden by --config/--configfile. See README.md.
import copy
import hashlib
import json
import os
import sys
from pathlib import Path

import yaml

from senone import SenoneError
from senone.config import load_config, typed_cli_value

RECIPE = config.get("recipe", "synth_zh")
# nested --config values reach us as strings (Snakemake's BaseLoader): read their scalars as a recipe file would
_CLI_KEYS = set(getattr(getattr(workflow, "config_settings", None), "config", None) or {})
try:
    CFG = load_config(RECIPE, overrides={k: typed_cli_value(v) if k in _CLI_KEYS and isinstance(v, (dict, list)) else v
                                         for k, v in config.items() if k != "recipe"})
except SenoneError as exc:  # a configuration error is one line per problem (senone.schema), before any job
    sys.exit("\n".join(f"error: {line}" for line in str(exc).splitlines()))


def _clear_stale_locks() -> None:
    """Remove the locks a killed run left, so the same command resumes it (README "Reruns and configuration
    errors"). Snakemake keeps its locks until the run ends; after ``kill -9`` they stay and every later run
    stops with "Directory cannot be locked" until ``--unlock``. They are stale when nothing of this workflow
    still runs in this working directory: no other process here (current directory = this one, ancestors of
    this process left out) runs snakemake or a stage (``-m steps.``). Orphaned stage jobs of the killed run
    keep their locks, so a resumed run never trains beside them. Linux only (/proc); elsewhere nothing is
    touched. (A dry run clears them too: it cannot be told apart while the Snakefile is read, and stale locks
    are stale either way.)"""
    locks = sorted(Path(".snakemake/locks").glob("*.lock"))
    proc = Path("/proc")
    if not locks or not proc.is_dir() or not getattr(workflow, "is_main_process", False):
        return
    here, mine = os.path.realpath("."), set()
    pid = os.getpid()
    while pid > 1 and pid not in mine:  # this process and its ancestors (the shell that started it...)
        mine.add(pid)
        try:
            pid = int((proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            if os.readlink(entry / "cwd") != here:
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"snakemake" in cmd or b"-m steps." in cmd:
            return  # a run (or an orphaned stage of one) is still going here: its locks are real
    for lock in locks:
        lock.unlink(missing_ok=True)
    print(f"Removed the locks of an earlier run that was killed ({len(locks)} file(s) in .snakemake/locks): no "
          "snakemake or stage process runs in this directory any more.", file=sys.stderr)


_clear_stale_locks()

CORPUS = CFG["corpus"]["name"]
DATA = f"data/{RECIPE}"
EXP = f"exp/{RECIPE}"
MANIFESTS = f"{DATA}/manifests"
FEATS = f"{DATA}/feats/gmm"
ROOT = workflow.basedir
# steps run as modules of the project (they import local/ corpus recipes), from any working directory
# one BLAS thread per process: stages parallelise over processes, and threaded BLAS on small matrices
# was 10x slower on a loaded 2-core machine
STEP = f"OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}} {sys.executable} -m steps"
SPLITS = ["train", "dev", "test"]
SAMPLING_RATE = int(CFG["corpus"].get("sampling_rate", 16000))  # the recipe's audio rate (features of both kinds)
SYSTEMS = CFG["systems"]  # GMM stages in training order; the last is the best so far
BEST = SYSTEMS[-1]
ALI_FROM = CFG.get("nn", {}).get("alignments_from") or BEST  # which GMM stage gives the networks their targets
# The networks' validation utterances: a list of training utterance ids (nn.valid_from; null = a random draw of
# nn.valid_fraction). One inside the manifests folder is the recipe's prepare's to write (HKUST's ~3 h of calls).
NN_VALID_FROM = CFG.get("nn", {}).get("valid_from") or None
_IN_MANIFESTS = bool(NN_VALID_FROM) and os.path.normpath(NN_VALID_FROM).startswith(MANIFESTS + "/")
# Extra LM text (lm.extra_text): files in the manifests folder are the recipe's prepare's to write (synth_zh's
# never-spoken sentences); the lexicon and the LM re-run when any of them changes
LM_EXTRA_TEXT = [str(p) for p in (CFG.get("lm", {}).get("extra_text") or [])]
PREPARED_LISTS = [NN_VALID_FROM] if _IN_MANIFESTS else []
# outputs of prepare only (not in its settings, so naming them does not re-run the corpus and everything after it)
PREPARED_TEXT = [p for p in LM_EXTRA_TEXT if os.path.normpath(p).startswith(MANIFESTS + "/")]
# Mandarin is scored by characters (cer.txt, plus pinyin syllable error rates), English by words (wer.txt)
LANGUAGE = CFG.get("language", "zh")
METRIC = "wer" if LANGUAGE == "en" else "cer"

wildcard_constraints:
    system="[^/]+",  # a GMM system is one directory under exp/<recipe>/; networks live under exp/<recipe>/nn/
    model="[^/]+",


def cuts(split):
    return f"{MANIFESTS}/{CORPUS}_cuts_{split}.jsonl.gz"


def conf(*keys):
    """JSON of the named config sections (rules re-run when these change); a dotted key keeps one subsection
    at any depth (``features.gmm``: the GMM rules do not re-run when ``features.nn`` changes; ``gmm.tri1``:
    tri1 does not re-run when another stage's settings change). Keys missing from the configuration are left
    out, so the JSON of one- and two-level keys is what it always was."""
    out: dict = {}
    for key in keys:
        parts, node = key.split("."), CFG
        for part in parts:
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is _MISSING:
            continue
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = copy.deepcopy(node)
    return json.dumps(out, ensure_ascii=False, sort_keys=True)


_MISSING = object()


# The merged configuration of this run, for traceability (rewritten only when it changes).
_cfg_path = Path(EXP) / "config.yaml"
_cfg_text = yaml.safe_dump(CFG, allow_unicode=True, sort_keys=True)
if not _cfg_path.exists() or _cfg_path.read_text(encoding="utf-8") != _cfg_text:
    _cfg_path.parent.mkdir(parents=True, exist_ok=True)
    _cfg_path.write_text(_cfg_text, encoding="utf-8")


def test_scores(system):
    """The test-set score files of a system: error rate, and syllable error rates for Mandarin."""
    files = [f"{EXP}/{system}/decode_test/{METRIC}.txt"]
    return files + ([f"{EXP}/{system}/decode_test/syllable_er.txt"] if LANGUAGE == "zh" else [])


# what the RESULTS table reports: every GMM system, then the recipe's default network (nn.default)
NN_DEFAULT = (CFG.get("nn") or {}).get("default")
REPORTED = SYSTEMS + ([f"nn/{NN_DEFAULT}"] if NN_DEFAULT else [])
FINAL_SYSTEM = REPORTED[-1]


rule decode:
    """Default target: decode test with the GMM systems and the default network; print the RESULTS table."""
    default_target: True
    input:
        scores=test_scores(FINAL_SYSTEM),
        results=f"{EXP}/RESULTS.md",
    shell:
        "cat {input.results}; echo; echo '== {RECIPE}: {FINAL_SYSTEM}, test set (LM weight chosen on dev) =='; "
        "cat {input.scores}"


include: "rules/nn.smk"


rule senone_ali:
    """Per-frame senone (pdf-id) alignments for the networks, from the stage named by nn.alignments_from."""
    input:
        pkl=f"{EXP}/{ALI_FROM}/final.pkl",
        ali=f"{EXP}/{ALI_FROM}/ali.ark",
    output:
        ali=f"{EXP}/senone_ali/pdf.ark",
        info=f"{EXP}/senone_ali/senones.json",
    params:
        source=ALI_FROM,
    log:
        f"{EXP}/log/senone_ali.log",
    shell:
        "{STEP}.export_senone_ali --stage-dir {EXP}/{params.source} --out {EXP}/senone_ali --log {log}"


rule results:
    input:
        [f"{EXP}/{s}/decode_{split}/{METRIC}.txt" for s in REPORTED for split in ("dev", "test")],
    output:
        md=f"{EXP}/RESULTS.md",
        csv=f"{EXP}/RESULTS.csv",
        png=f"{EXP}/RESULTS.png",
    log:
        f"{EXP}/log/results.log",
    shell:
        "{STEP}.results --exp {EXP} {REPORTED} --log {log} > /dev/null"


# What decides which utterances prepare finds, per corpus preparation: glob patterns under the corpus folders
# (corpus_dir, audio_dir, trans_dir). Listing files are stamped by their content, audio by name, size and
# modification time (never read), so an edited TSV or transcript, or an utterance removed, re-runs prepare and
# what follows.
# Patterns stay out of big audio trees where a listing names the audio (Common Voice's clips/, AISHELL's wav/).
CORPUS_LISTINGS = {
    "fsdd": ("speakers.tsv", "recordings/*.wav"),
    "cv_zh": ("*.tsv", "*/*.tsv"),
    "custom": ("**/*",),  # a folder of audio + .txt, or Kaldi data dirs (wav.scp, text, utt2spk, segments)
    "hkust": ("**/*.txt", "**/*.sph", "**/*.SPH", "**/*.TXT"),
    "aishell1": ("data_aishell/transcript/*.txt",),
}
CORPUS_STAMP = f"{DATA}/corpus_listing.tsv"


# audio is stamped by size and date (never read); listings and transcripts by their content, so a corpus copied
# again (new dates, same files) re-runs nothing
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".sph", ".aac", ".wma", ".aiff", ".aif"}


def _file_stamp(path: Path) -> str:
    st = path.stat()
    if path.suffix.lower() in AUDIO_SUFFIXES or st.st_size > (16 << 20):
        return f"{st.st_size}\t{st.st_mtime_ns}"
    return f"{st.st_size}\tsha1:{hashlib.sha1(path.read_bytes()).hexdigest()}"


def corpus_stamp() -> list[str]:
    """The stamp of the corpus's listing (rewritten when it changes, so its date tells prepare to re-run), or
    nothing for a corpus made here (synth_zh: its settings are prepare's params)."""
    patterns = CORPUS_LISTINGS.get(CFG["corpus"].get("prepare"))
    if not patterns:
        return []
    lines = []
    for key in ("corpus_dir", "audio_dir", "trans_dir"):
        folder = CFG["corpus"].get(key)
        if not folder:
            continue
        root = Path(folder).expanduser()
        if not root.is_dir():
            lines.append(f"{key}\t{folder}\tmissing")
            continue
        found = {p for pattern in patterns for p in root.glob(pattern) if p.is_file()}
        here = Path.cwd().resolve()
        if here == root.resolve() or root.resolve() in here.parents:  # the run lives inside the corpus folder:
            ours = [here / d for d in ("data", "exp", ".snakemake")]  # its own outputs are not the corpus
            found = {p for p in found if not any(d == q or d in q.parents for q in [p.resolve()] for d in ours)}
        for p in sorted(found):
            lines.append(f"{key}\t{p.relative_to(root)}\t{_file_stamp(p)}")
    text = "".join(line + "\n" for line in lines)
    path = Path(CORPUS_STAMP)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return [CORPUS_STAMP]


# a user's split list (custom: corpus.split_file) is read by prepare too
SPLIT_FILE = [CFG["corpus"]["split_file"]] if CFG["corpus"].get("split_file") else []


rule prepare:
    input:
        listing=corpus_stamp(),
        split_file=SPLIT_FILE,
    output:
        [cuts(s) for s in SPLITS] + PREPARED_LISTS + PREPARED_TEXT,
    params:
        # files it must write besides the manifests ride along in the conf (unchanged for recipes without any)
        conf=json.dumps({**CFG["corpus"], **({"expect_files": PREPARED_LISTS} if PREPARED_LISTS else {})},
                        sort_keys=True),
        language=LANGUAGE,
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/prepare.tsv"
    log:
        f"{EXP}/log/prepare.log",
    shell:
        "{STEP}.prepare_corpus --conf '{params.conf}' --language {params.language} --out {DATA} --threads {threads} "
        "--log {log}"


# a user lexicon (lang.lexicon) is read by lang: editing it re-runs lang and everything after it
LEXICON = [CFG["lang"]["lexicon"]] if CFG["lang"].get("lexicon") else []


rule lang:
    input:
        train=cuts("train"),
        extra_text=LM_EXTRA_TEXT,
        lexicon=LEXICON,
    output:
        L=f"{DATA}/lang/L.fst",
        words=f"{DATA}/lang/words.txt",
    params:
        conf=conf("lang", "lm.extra_text", "language"),  # of lm only what lang reads: a new LM order re-runs the LM
    benchmark:
        f"{EXP}/benchmarks/lang.tsv"
    log:
        f"{EXP}/log/lang.log",
    shell:
        "{STEP}.prepare_lang --conf '{params.conf}' --train-cuts {input.train} --out {DATA}/lang --log {log}"


rule lm:
    input:
        train=cuts("train"),
        dev=cuts("dev"),
        words=f"{DATA}/lang/words.txt",
        extra_text=LM_EXTRA_TEXT,
    output:
        G=f"{DATA}/lm/G.fst",
        report=f"{DATA}/lm/lm_report.json",
    params:
        conf=conf("lang", "lm"),
    benchmark:
        f"{EXP}/benchmarks/lm.tsv"
    log:
        f"{EXP}/log/lm.log",
    shell:
        "{STEP}.train_lm --conf '{params.conf}' --lang {DATA}/lang --train-cuts {input.train} "
        "--dev-cuts {input.dev} --out {DATA}/lm --log {log}"


rule feats:
    """Features of one split, {kind} gmm (MFCC + pitch, features.gmm) or nn (log-mel + energy, features.nn)."""
    input:
        cuts=lambda wc: cuts(wc.split),
    output:
        cuts=f"{DATA}/feats/{{kind}}/cuts_{{split}}.jsonl.gz",
        cmvn=f"{DATA}/feats/{{kind}}/cmvn_{{split}}.npz",
    wildcard_constraints:
        kind="gmm|nn",
    params:
        conf=lambda wc: json.dumps(CFG["features"][wc.kind], sort_keys=True),
    benchmark:
        f"{EXP}/benchmarks/feats_{{kind}}_{{split}}.tsv"
    log:
        f"{EXP}/log/feats_{{kind}}_{{split}}.log",
    shell:
        "{STEP}.compute_feats --kind {wildcards.kind} --conf '{params.conf}' --cuts {input.cuts} "
        "--split {wildcards.split} --out {DATA}/feats/{wildcards.kind} --sampling-rate {SAMPLING_RATE} --log {log}"


def gmm_stage_conf(system: str) -> str:
    """What a GMM training step reads: its own ``gmm.<system>`` section, the feature memory limit, the Δ and
    CMVN settings it applies on the fly, and the lang's unit. Another stage's sizes, the MFCC settings (their
    files are inputs) or the LM do not re-run it."""
    return conf("lang.unit", "features.gmm.cmvn_norm_vars", "features.gmm.delta_order", f"gmm.{system}",
                "gmm.max_feature_memory_gb")


# The resuming stages (mono, the tree stages, nn_train) write their logs themselves (params.log, appended to
# across a resume; Snakemake would delete a `log:` file before the resumed job) and delete their resume state
# once they have finished (a finished stage's checkpoint never satisfies a later run: --forcerun retrains).


rule mono:
    input:
        L=f"{DATA}/lang/L.fst",
        train=cuts("train"),
        feats=f"{FEATS}/cuts_train.jsonl.gz",
        cmvn=f"{FEATS}/cmvn_train.npz",
    output:
        mdl=f"{EXP}/mono/final.mdl",
        pkl=f"{EXP}/mono/final.pkl",
        ali=f"{EXP}/mono/ali.ark",
    params:
        conf=gmm_stage_conf("mono"),
        log=f"{EXP}/mono/log/train.log",
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/mono.tsv"
    shell:
        "{STEP}.train_mono --conf '{params.conf}' --lang {DATA}/lang --train-cuts {input.train} "
        "--feats {input.feats} --cmvn {input.cmvn} --out {EXP}/mono --threads {threads} --log {params.log} "
        "&& rm -f {EXP}/mono/checkpoint.pkl"


STAGE_STEP = {"deltas": "train_tri", "lda_mllt": "train_lda_mllt", "sat": "train_sat"}


def stage_conf(system):
    return CFG["gmm"][system]


rule tree_stage:
    """A decision-tree GMM stage (tri1 Δ+ΔΔ, tri2 LDA+MLLT, tri3 SAT) from its previous stage's alignments."""
    input:
        L=f"{DATA}/lang/L.fst",
        train=cuts("train"),
        feats=f"{FEATS}/cuts_train.jsonl.gz",
        cmvn=f"{FEATS}/cmvn_train.npz",
        prev=lambda wc: f"{EXP}/{stage_conf(wc.system)['prev']}/final.pkl",
        ali=lambda wc: f"{EXP}/{stage_conf(wc.system)['prev']}/ali.ark",
    output:
        mdl=f"{EXP}/{{system}}/final.mdl",
        pkl=f"{EXP}/{{system}}/final.pkl",
        ali=f"{EXP}/{{system}}/ali.ark",
    wildcard_constraints:
        system="tri[0-9a-z_]+",
    params:
        conf=lambda wc: gmm_stage_conf(wc.system),
        step=lambda wc: STAGE_STEP[stage_conf(wc.system)["kind"]],
        prev=lambda wc: stage_conf(wc.system)["prev"],
        log=f"{EXP}/{{system}}/log/train.log",
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/{{system}}.tsv"
    shell:
        "{STEP}.{params.step} --stage {wildcards.system} --conf '{params.conf}' --lang {DATA}/lang "
        "--train-cuts {input.train} --feats {input.feats} --cmvn {input.cmvn} --prev {EXP}/{params.prev} "
        "--out {EXP}/{wildcards.system} --threads {threads} --log {params.log} "
        "&& rm -f {EXP}/{wildcards.system}/checkpoint.pkl"


def first_pass_inputs(wc):
    """A SAT system decodes in two passes: its speaker-independent predecessor's graph and LM weight first."""
    conf_ = CFG["gmm"].get(wc.system, {})
    if conf_.get("kind") != "sat":
        return []
    si = conf_["prev"]
    return [f"{EXP}/{si}/graph/HCLG.fst", f"{EXP}/{si}/decode_dev/best_lm_weight.json"]


rule graph:
    input:
        mdl=f"{EXP}/{{system}}/final.pkl",
        G=f"{DATA}/lm/G.fst",
        L=f"{DATA}/lang/L.fst",
    output:
        f"{EXP}/{{system}}/graph/HCLG.fst",
    params:
        conf=conf("graph"),
    benchmark:
        f"{EXP}/benchmarks/graph_{{system}}.tsv"
    log:
        f"{EXP}/{{system}}/log/graph.log",
    shell:
        "{STEP}.make_graph --conf '{params.conf}' --lang {DATA}/lang --G {input.G} "
        "--model-dir {EXP}/{wildcards.system} --out {EXP}/{wildcards.system}/graph --log {log}"


rule decode_dev:
    input:
        hclg=f"{EXP}/{{system}}/graph/HCLG.fst",
        feats=f"{FEATS}/cuts_dev.jsonl.gz",
        cmvn=f"{FEATS}/cmvn_dev.npz",
        cuts=cuts("dev"),
        first_pass=first_pass_inputs,
    output:
        score=f"{EXP}/{{system}}/decode_dev/{METRIC}.txt",
        best=f"{EXP}/{{system}}/decode_dev/best_lm_weight.json",
    params:
        conf=conf("lang", "features.gmm", "decode", "language"),
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/decode_dev_{{system}}.tsv"
    log:
        f"{EXP}/{{system}}/log/decode_dev.log",
    shell:
        "{STEP}.decode --conf '{params.conf}' --model-dir {EXP}/{wildcards.system} --graph {EXP}/{wildcards.system}/graph "
        "--cuts {input.cuts} --feats {input.feats} --cmvn {input.cmvn} --sweep --out {EXP}/{wildcards.system}/decode_dev "
        "--threads {threads} --log {log}"


rule decode_test:
    input:
        hclg=f"{EXP}/{{system}}/graph/HCLG.fst",
        feats=f"{FEATS}/cuts_test.jsonl.gz",
        cmvn=f"{FEATS}/cmvn_test.npz",
        cuts=cuts("test"),
        best=f"{EXP}/{{system}}/decode_dev/best_lm_weight.json",
        first_pass=first_pass_inputs,
    output:
        test_scores("{system}"),
    params:
        conf=conf("lang", "features.gmm", "decode", "language"),
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/decode_test_{{system}}.tsv"
    log:
        f"{EXP}/{{system}}/log/decode_test.log",
    shell:
        "{STEP}.decode --conf '{params.conf}' --model-dir {EXP}/{wildcards.system} --graph {EXP}/{wildcards.system}/graph "
        "--cuts {input.cuts} --feats {input.feats} --cmvn {input.cmvn} --lm-weight-from {input.best} "
        "--out {EXP}/{wildcards.system}/decode_test --threads {threads} --log {log}"


include: "rules/export.smk"
