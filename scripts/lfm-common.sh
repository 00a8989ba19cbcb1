# Shared by the GPU-host benchmark scripts (sourced): the LFM-1b-scale dataset and a GPU-trained
# model under $W, made once per host and reused while it stays up.
B=${B:-.device-bin/encore}
W=${W:-/tmp/w}

lfm_data() {
    if [[ ! -f $W/lfm/manifest.json ]]; then
        $B --quiet synth --scale lfm1b --out "$W/raw"
        $B --quiet prep "$W/raw" --out "$W/lfm"
        rm -rf "$W/raw"
    fi
}

lfm_model() {
    lfm_data
    if [[ ! -f $W/model/item_factors.npy ]]; then
        $B --quiet train "$W/lfm" --out "$W/model" --device gpu --force | tail -n 1
    fi
}
