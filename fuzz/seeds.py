#!/usr/bin/env python3
"""Writes the hand-made seed corpus fuzz/corpus/<target>/ (standard library only).

Every seed is made up from the formats' documentation (README.md, src/data/formats.rs and
the LFM-1b / HetRec column lists); no real data file is copied. The ingest and prep targets
take a leading option byte (see fuzz/src/helpers.rs and fuzz_targets/prep.rs), the names and prep
targets split their input into files at lines that are exactly `--`.
Run from the repository root: python3 fuzz/seeds.py
"""
import io
import os
import struct
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def npy(descr, shape, values, fortran=False):
    """A version-1 .npy: descr like '<i8', values packed by struct code from descr."""
    shape_txt = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", shape_txt)
    header = header.encode()
    while (10 + len(header) + 1) % 64:
        header += b" "
    header += b"\n"
    code = {"<i8": "q", "<i4": "i", "<f4": "f", "<f8": "d", "|S3": "3s"}[descr]
    body = b"".join(struct.pack("<" + code, v) for v in values)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


def npz(arrays, names_with_npy=True, compress=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, data in arrays:
            info = zipfile.ZipInfo(name + (".npy" if names_with_npy else ""), (2024, 1, 1, 0, 0, 0))
            info.compress_type = compress
            z.writestr(info, data)
    return buf.getvalue()


def csr(indptr, indices, data, shape, ip="<i4", dt="<f4", fmt=True):
    arrs = [("indices", npy("<i4", [len(indices)], indices)),
            ("indptr", npy(ip, [len(indptr)], indptr))]
    if fmt:
        arrs.append(("format", npy("|S3", [], [b"csr"])))
    arrs += [("shape", npy("<i8", [2], shape)), ("data", npy(dt, [len(data)], data))]
    return arrs


def les_lines(n_users, per_user, start_user=1000):
    out = []
    ts = 1385212958
    for u in range(n_users):
        for j in range(per_user):
            track = (u * 7 + j * 3) % 23
            out.append(f"{start_user + u}\t{track % 5}\t{track % 11}\t{track}\t{ts}\n")
            ts += 37
    return "".join(out)


# --- parse_line: option byte = schema (bits 0-1) | delimiter (bits 2-3) ---
put("parse_line", "les", b"\x00" + b"31435741\t2\t4\t4\t1385212958")
put("parse_line", "les-text-album", b"\x00" + b"1\t2\tsome album\t4\t5\r")
put("parse_line", "lfm2b", b"\x01" + b"2\t51\t13883")
put("parse_line", "hetrec-crlf", b"\x02" + b"2\t51\t13883  \t\r")
put("parse_line", "csv-quoted", b"\x07" + b'"7", 8 ,"9"')
put("parse_line", "semicolon", b"\x0b" + b"+7;8;9")
put("parse_line", "space", b"\x0f" + b"7 8 9")
put("parse_line", "big-user", b"\x03" + b"9223372036854775807\t2\t3")
put("parse_line", "negative", b"\x03" + b"1\t2\t-3")

# --- ingest_*: option byte, then the file ---
put("ingest_lfm1b", "plain", b"\x00" + les_lines(3, 3).encode())
put("ingest_lfm1b", "time-split", b"\x40" + les_lines(4, 5).encode())
put("ingest_lfm1b", "gz-skip-bad", b"\x30" + (les_lines(2, 2) + "1\tx\t3\t4\t5\n" + les_lines(1, 2, 9)).encode())
put("ingest_lfm1b", "multi-block", b"\x40" + les_lines(12, 6).encode())  # > 1 KiB: users cut across blocks
put("ingest_lfm1b", "bom-crlf", b"\x00" + b"\xef\xbb\xbf" + les_lines(2, 2).replace("\n", "\r\n").encode())
put("ingest_lfm2b", "header", b"\x00" + b"user_id\ttrack_id\tcount\n1\t10\t3\n1\t11\t1\n2\t10\t5\n")
put("ingest_lfm2b", "zero-count", b"\x00" + b"user_id\ttrack_id\tcount\n1\t10\t0\n1\t11\t1\n\n3\t10\t2\n")
put("ingest_lfm2b", "unsorted-users", b"\x10" + b"5\t1\t1\n2\t1\t2\n5\t3\t1\n2\t2\t9\n")
put("ingest_hetrec", "crlf", b"\x00" + b"userID\tartistID\tweight\r\n2\t51\t13883\r\n2\t52\t11690\r\n3\t51\t10\r\n")
put("ingest_hetrec", "gz", b"\x20" + b"userID\tartistID\tweight\n2\t51\t1\n4\t51\t2\n4\t60\t3\n")
put("ingest_triples", "csv-header", b"\x00" + b"user,item,plays\n1,2,3\n1,5,1\n2,2,4\n")
put("ingest_triples", "csv-quoted", b"\x00" + b'"user","item","count"\n"7", 8 ,"9"\n"7","9","1"\n')
put("ingest_triples", "tsv-no-header", b"\x08" + b"1\t2\t3\n2\t3\t4\n")
put("ingest_triples", "semicolon", b"\x00" + b"u;i;c\n1;2;3\n1;3;3\n")
put("ingest_triples", "space-forced-header", b"\x04" + b"a b c\n1 2 3\n")
put("ingest_triples", "comma-forced", b"\x02" + b"1,2,3\n1,2,3\n")

# --- names: option byte (bit 0 HetRec, bit 1 no artists file, bit 2 gzip), sections ---
put("names", "lfm1b", b"\x00" + b"10\tSong A\t7\n20\tSong\twith tab\t8\n5\tFive\t1\n--\n7\tBand Seven\n8\tBand Eight\n1\tOne\n")
put("names", "lfm1b-no-artists", b"\x02" + b"1\tx\t2\n2\ty\t3\n")
put("names", "hetrec", b"\x01" + b"id\tname\turl\tpictureURL\n1\tMALICE MIZER\thttp://a/1\thttp://b/1.jpg\n2\tDiary of Dreams\thttp://a/2\t\n")
put("names", "items-tsv", b"\x00" + b"item_index\titem_id\tname\tartist_id\tartist_name\n0\t10\tSong A\t7\tBand Seven\n1\t40\t\t\t\n")
put("names", "gz-bom", b"\x04" + b"\xef\xbb\xbf3\tThree\t9\r\n--\n9\tNine\r\n")

# --- npz_csr: scipy CSR .npz ---
put("npz_csr", "csr-3x5", npz(csr([0, 2, 2, 3], [1, 4, 0], [1.0, 7.0, 3.5], [3, 5])))
put("npz_csr", "csr-int64-f64", npz(csr([0, 1, 2], [0, 1], [2.0, 1.0], [2, 2], ip="<i8", dt="<f8")))
put("npz_csr", "csr-empty", npz(csr([0, 0], [], [], [1, 4], fmt=False)))
put("npz_csr", "csr-bare-names", npz(csr([0, 1], [2], [1.0], [1, 3]), names_with_npy=False))
# Members only (the target zips them): indices, indptr, shape, data[, format].
put("npz_csr", "members-3x5", b"\n--\n".join(d for _, d in csr([0, 2, 2, 3], [1, 4, 0], [1.0, 7.0, 3.5], [3, 5], fmt=False)))
put("npz_csr", "members-int64", b"\n--\n".join(d for _, d in csr([0, 1, 2], [0, 1], [2.0, 1.0], [2, 2], ip="<i8", dt="<f8", fmt=False)))

# --- npy_ids: int64 .npy ---
put("npy_ids", "ids", npy("<i8", [3], [5, 1 << 40, 0]))
put("npy_ids", "empty", npy("<i8", [0], []))
put("npy_ids", "int32", npy("<i4", [2], [1, 2]))
put("npy_ids", "2d", npy("<i8", [1, 2], [1, 2]))

# --- npy_factors: [user_factors.npy, item_factors.npy] (model.json says 2 users, 3 items, k 2) ---
u = npy("<f4", [2, 2], [0.5, -1.0, 0.25, 2.0])
i = npy("<f4", [3, 2], [1.0, 0.0, -0.5, 0.5, 3.0, 1.5])
put("npy_factors", "valid", u + b"\n--\n" + i)
put("npy_factors", "fortran", npy("<f4", [2, 2], [1, 2, 3, 4], fortran=True) + b"\n--\n" + i)
put("npy_factors", "f64", npy("<f8", [2, 2], [1, 2, 3, 4]))
put("npy_factors", "1d", npy("<f4", [4], [1, 2, 3, 4]))
put("npy_factors", "nan", u + b"\n--\n" + npy("<f4", [3, 2], [float("nan")] * 6))

# --- model_json: model.json (factor files fixed: 2 x 2 users, 3 x 2 items) ---
model = """{
  "encore_version": "0.1.0",
  "created_unix": 1700000000,
  "config": {"factors": 2, "iterations": 1, "regularization": 0.1, "alpha": 2.0,
             "confidence": "log", "epsilon": 1.0, "solver": "cg", "cg_steps": 3, "seed": 42,
             "compute_loss": true},
  "solver": "cg", "device": "cpu", "threads": 1,
  "machine": {"host": "h", "cpu": "c", "cores": 2, "memory_bytes": 1024},
  "dataset": {"dir": "/d", "content_hash": "blake3:00", "users": 2, "items": 3, "train_pairs": 4},
  "iterations": [{"iteration": 0, "seconds": 0.5, "loss": 1.5,
                  "valid": {"k": 10, "precision": 0.1, "ndcg": 0.2}}],
  "train_seconds": 0.5
}
"""
put("model_json", "valid", model)
put("model_json", "wrong-shape", model.replace('"users": 2', '"users": 7'))
put("model_json", "linear-cholesky", model.replace('"log"', '"linear"').replace('"solver": "cg", "cg', '"solver": "cholesky", "cg'))

# --- manifest_json: manifest.json (the rest of the dataset is fixed) ---
manifest = """{
  "encore_version": "0.1.0",
  "created_unix": 1700000000,
  "input": {"format": "lfm1b", "path": "/in", "data_file": "/in/LFM-1b_LEs.txt", "bytes": 100,
            "header": null, "names": {"kind": "lfm1b", "tracks": "/in/t", "artists": null}},
  "options": {"min_user_tracks": 1, "min_track_users": 1, "filter_mode": "fixed-point",
              "split": {"kind": "random", "fraction": 0.2, "seed": 42}, "skip_bad_lines": false},
  "lines": {"total": 4, "records": 4, "header": 0, "blank": 0, "zero_count": 0, "bad_skipped": 0,
            "bad_examples": [], "regrouped": false},
  "counts": {"raw": {"users": 2, "items": 3, "pairs": 4, "events": 8},
             "filter_rounds": [{"users": 2, "items": 3, "pairs": 4, "events": 8}],
             "kept": {"users": 2, "items": 3, "pairs": 4, "events": 8},
             "train": {"users": 2, "items": 3, "pairs": 3, "events": 7},
             "valid": {"users": 1, "items": 3, "pairs": 1, "events": 1}},
  "indptr_dtype": "int32",
  "items_without_name": 1,
  "timings_s": {"parse": 0.1, "total": 0.2},
  "peak_rss_bytes": null,
  "content_hash": "blake3:00",
  "files": ["train.npz", "valid.npz", "user_ids.npy", "item_ids.npy", "items.tsv", "manifest.json"]
}
"""
put("manifest_json", "valid", manifest)
put("manifest_json", "hetrec-time", manifest.replace('"lfm1b", "tracks": "/in/t", "artists": null', '"hetrec", "artists": "/in/a"')
    .replace('{"kind": "random", "fraction": 0.2, "seed": 42}', '{"kind": "time", "last_n": 3}'))

# --- prep: option byte, sections [data, names..] ---
tracks = "".join(f"{t}\tTrack {t}\t{t % 5}\n" for t in range(0, 23, 2))
artists = "".join(f"{a}\tArtist {a}\n" for a in range(5))
put("prep", "lfm1b-names", b"\x00" + (les_lines(6, 4) + "--\n" + tracks + "--\n" + artists).encode())
put("prep", "lfm1b-time-once", b"\x0c" + les_lines(6, 5).encode())
put("prep", "lfm2b", b"\x21" + b"user_id\ttrack_id\tcount\n1\t10\t3\n1\t11\t1\n2\t10\t5\n2\t11\t2\n3\t11\t1\n")
put("prep", "hetrec-artists", b"\x02" + b"userID\tartistID\tweight\r\n2\t51\t13\r\n2\t52\t11\r\n3\t51\t10\r\n3\t52\t1\r\n--\nid\tname\turl\tpictureURL\n51\tA\tu\tp\n")
put("prep", "triples-skip-bad", b"\x13" + b"user,item,plays\n1,2,3\n1,5,1\nbad\n2,2,4\n2,5,1\n")
put("prep", "multi-block", b"\x60" + les_lines(20, 5).encode())

# --- ingest_movielens: option byte (bits 0-1 layout: csv, dat, u.data), ratings file ---
# From the MovieLens READMEs: ratings.csv "userId,movieId,rating,timestamp" with a header and
# half-star ratings; ratings.dat "UserID::MovieID::Rating::Timestamp"; u.data tab-separated.
put("ingest_movielens", "ratings-csv", b"\x00userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n1,3,4.5,964981247\r\n2,1,3.5,1445714835\r\n")
put("ingest_movielens", "ratings-csv-min-value-time", b"\xc0userId,movieId,rating,timestamp\n1,1,4.0,9\n1,3,2.5,8\n2,1,3.5,7\n2,3,5,6\n")
put("ingest_movielens", "ratings-dat", b"\x01" + b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
put("ingest_movielens", "u-data-bad-skip", b"\x12" + b"196\t242\t3\t881250949\n186\t302\tx\t891717742\n196\t302\t5\n")
put("ingest_movielens", "ratings-csv-gz", b"\x20userId,movieId,rating,timestamp\n1,1,0.5,1\n1,2,-1,2\n")

# --- ingest_msd: option byte, train_triplets.txt (user \t song \t count, string ids) ---
msd = "".join(f"{u:040x}\tSO{(u * 3 + k) % 7:016X}\t{1 + k}\n" for u in (0xb80344d0, 0x85c1f87f, 0x1) for k in range(3))
put("ingest_msd", "triplets", b"\x00" + msd.encode())
put("ingest_msd", "triplets-crlf-gz", b"\x20" + msd.replace("\n", "\r\n").encode())
put("ingest_msd", "bad-lines-skipped", b"\x10" + (msd + "u1\tSO1\n" + "u2\tSO1\t1.5\n" + "\tSO1\t1\n").encode())

# --- ingest_listenbrainz: option byte, files split at "--" (a, b, c users from paths) ---
# From ListenBrainz's JSON documentation and the dump's Listen.to_json layout.
dump = ('{"user_id": 1, "user_name": "rob", "timestamp": 1443521965, "track_metadata": {"artist_name": "Rick Astley", '
        '"track_name": "Never Gonna Give You Up", "additional_info": {"recording_msid": "d23f4719-9212-49f0-ad08-ddbfbfc50d6f"}}, '
        '"recording_msid": "d23f4719-9212-49f0-ad08-ddbfbfc50d6f"}\n')
api = ('{"listened_at": 1443521966, "inserted_at": 1443521970, "recording_msid": "aaaa4719-9212-49f0-ad08-ddbfbfc50d6f", '
       '"track_metadata": {"artist_name": "A", "track_name": "T", "mbid_mapping": {"recording_mbid": "98255A8C-017a-4bc7-8dd6-1fa36124572b"}}}\n')
put("ingest_listenbrainz", "dump-and-export", b"\x00" + (dump + api + "--\n" + api + dump).encode())
put("ingest_listenbrainz", "time-gz", b"\x60" + (dump + api + api).encode())
put("ingest_listenbrainz", "bad-skipped", b"\x10" + (dump + "{not json\n" + '{"user_name": "x"}\n' + "\r\n" + api).encode())

# --- npy_str_ids: a .npy of ids ---
def npy_s(width, values):
    header = ("{'descr': '|S%d', 'fortran_order': False, 'shape': (%d,), }" % (width, len(values))).encode()
    while (10 + len(header) + 1) % 64:
        header += b" "
    header += b"\n"
    body = b"".join(v.encode().ljust(width, b"\0") for v in values)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body
put("npy_str_ids", "msd-users", npy_s(40, ["%040x" % 5, "%040x" % 9]))
put("npy_str_ids", "unsorted", npy_s(3, ["b", "a"]))
put("npy_str_ids", "int64", npy("<i8", [3], [1, 5, 9]))

# --- serve_requests: option byte (route, no content type), then query string or JSON body ---
put("serve_requests", "recommend-get", b"\x00user=10&k=2&filter=false")
put("serve_requests", "recommend-get-unknown", b"\x00user=99")
put("serve_requests", "recommend-post", b'\x01{"users": [10, 20], "k": 3, "filter": true}')
put("serve_requests", "recommend-post-no-content-type", b'\x05{"users": [10]}')
put("serve_requests", "history", b'\x02{"history": [{"track": 1, "plays": 2.5}, {"track": 1, "plays": 1}], "k": 2}')
put("serve_requests", "history-bad-plays", b'\x02{"history": [{"track": 5, "plays": -1e39}], "filter": false}')
put("serve_requests", "similar", b"\x03item=5&k=1000")
put("serve_requests", "similar-bad-k", b"\x03item=9&k=18446744073709551616")
