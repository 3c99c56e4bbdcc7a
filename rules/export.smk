# Export (included at the end of the Snakefile): a trained system as a self-contained folder for senone-transcribe
# (steps/export.py, senone/export/). `snakemake export` writes the reported final system's (the default network)
# and the best GMM's; exp/<recipe>/export/<system>/model.json exports any other GMM stage,
# exp/<recipe>/export/nn/<model>/model.json any other network.

EXPORTED = list(dict.fromkeys([FINAL_SYSTEM, BEST]))


rule export:
    """Export the reported final system and the best GMM system (exp/<recipe>/export/<system>/)."""
    input:
        [f"{EXP}/export/{s}/model.json" for s in EXPORTED],
    shell:
        "for f in {input}; do echo \"exported: $(dirname $f)\"; done"


def export_first_pass_inputs(wc):
    """A SAT system's export carries its speaker-independent first pass: that stage's model, graph and LM weight."""
    conf_ = CFG["gmm"].get(wc.system, {})
    if conf_.get("kind") != "sat":
        return []
    return first_pass_inputs(wc) + [f"{EXP}/{conf_['prev']}/final.pkl", f"{EXP}/{conf_['prev']}/ali.ark"]


rule export_gmm:
    """Export one GMM system: graph, model, LDA/MLLT, fMLLR first pass, features, CMVN, LM weight."""
    input:
        pkl=f"{EXP}/{{system}}/final.pkl",
        ali=f"{EXP}/{{system}}/ali.ark",
        hclg=f"{EXP}/{{system}}/graph/HCLG.fst",
        best=f"{EXP}/{{system}}/decode_dev/best_lm_weight.json",
        test=test_scores("{system}"),
        first_pass=export_first_pass_inputs,
        lexicon=f"{DATA}/lang/L.fst",
        cmvn=f"{FEATS}/cmvn_train.npz",
    output:
        f"{EXP}/export/{{system}}/model.json",
    params:
        conf=conf("features.gmm", "decode", "language", "lang"),
    log:
        f"{EXP}/log/export_{{system}}.log",
    shell:
        "{STEP}.export --conf '{params.conf}' --recipe {RECIPE} --system {wildcards.system} --exp {EXP} --data {DATA} "
        "--sampling-rate {SAMPLING_RATE} --out {EXP}/export/{wildcards.system} --log {log}"


rule export_nn:
    """Export one network: weights, spec, priors, its alignment stage's graph and transition model, features, CMVN."""
    input:
        model=f"{NN_DIR}/{{model}}/final.pt",
        counts=f"{NN_DIR}/{{model}}/pdf_counts.txt",
        best=f"{NN_DIR}/{{model}}/decode_dev/best_lm_weight.json",
        test=test_scores("nn/{model}"),
        pkl=f"{EXP}/{ALI_FROM}/final.pkl",
        ali=f"{EXP}/{ALI_FROM}/ali.ark",
        hclg=f"{EXP}/{ALI_FROM}/graph/HCLG.fst",
        lexicon=f"{DATA}/lang/L.fst",
        cmvn=f"{NN_FEATS}/cmvn_train.npz",
        gmm_cmvn=f"{FEATS}/cmvn_train.npz",
    output:
        f"{EXP}/export/nn/{{model}}/model.json",
    params:
        conf=lambda wc: json.dumps({**json.loads(nn_conf(wc.model)), "features": {k: CFG["features"][k] for k in
                                    ("gmm", "nn")}}, ensure_ascii=False, sort_keys=True),
    log:
        f"{EXP}/log/export_nn_{{model}}.log",
    shell:
        "{STEP}.export --conf '{params.conf}' --recipe {RECIPE} --system nn/{wildcards.model} --ali-from {ALI_FROM} "
        "--exp {EXP} --data {DATA} --sampling-rate {SAMPLING_RATE} --out {EXP}/export/nn/{wildcards.model} --log {log}"
