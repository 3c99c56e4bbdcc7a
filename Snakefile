# senone workflow: one rule per stage, each calling one steps/ CLI. Configuration: conf/*.yaml, overridden by
# recipes/<recipe>.yaml, overridden by --config/--configfile. See README.md.
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
except SenoneError as exc:
    sys.exit(f"error: {exc}")

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
    (``features.gmm``: the GMM rules do not re-run when ``features.nn`` changes)."""
    out = {}
    for key in keys:
        top, _, sub = key.partition(".")
        if not sub and top in CFG:
            out[top] = CFG[top]
        elif sub in CFG.get(top, {}):
            out.setdefault(top, {})[sub] = CFG[top][sub]
    return json.dumps(out, ensure_ascii=False, sort_keys=True)


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


rule prepare:
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


rule lang:
    input:
        train=cuts("train"),
        extra_text=LM_EXTRA_TEXT,
    output:
        L=f"{DATA}/lang/L.fst",
        words=f"{DATA}/lang/words.txt",
    params:
        conf=conf("lang", "lm", "language"),
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
        conf=conf("lang", "features.gmm", "gmm"),
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/mono.tsv"
    log:
        f"{EXP}/mono/log/train.log",
    shell:
        "{STEP}.train_mono --conf '{params.conf}' --lang {DATA}/lang --train-cuts {input.train} "
        "--feats {input.feats} --cmvn {input.cmvn} --out {EXP}/mono --threads {threads} --log {log}"


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
        conf=conf("lang", "features.gmm", "gmm"),
        step=lambda wc: STAGE_STEP[stage_conf(wc.system)["kind"]],
        prev=lambda wc: stage_conf(wc.system)["prev"],
    threads: workflow.cores
    benchmark:
        f"{EXP}/benchmarks/{{system}}.tsv"
    log:
        f"{EXP}/{{system}}/log/train.log",
    shell:
        "{STEP}.{params.step} --stage {wildcards.system} --conf '{params.conf}' --lang {DATA}/lang "
        "--train-cuts {input.train} --feats {input.feats} --cmvn {input.cmvn} --prev {EXP}/{params.prev} "
        "--out {EXP}/{wildcards.system} --threads {threads} --log {log}"


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
