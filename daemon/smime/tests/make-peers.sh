#!/bin/sh
# daemon/smime/tests/make-peers.sh OUTDIR — regenerates the peer side of the
# S/MIME interop tests with openssl: a test CA and, for each key type the
# tests cover (RSA 2048/3072/4096, EC P-256/P-384), a key and an S/MIME
# certificate for NAME@peer.test, plus a certificate for another address
# (other@elsewhere.test) to provoke signer-mismatch. Also writes PKCS#12
# files (empty password) for gpgsm. Nothing here is committed: scripts/
# test-smime runs this into a fresh temporary directory on every run.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
cd "$out"

cat > ext.cnf <<'CNF'
[ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[rsa]
basicConstraints = CA:false
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:${ENV::EMAIL}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ec]
basicConstraints = CA:false
keyUsage = critical, digitalSignature, nonRepudiation, keyAgreement
extendedKeyUsage = emailProtection
subjectAltName = email:${ENV::EMAIL}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

EMAIL=ca@peer.test
export EMAIL
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
    -subj "/O=Sealgate tests/CN=Peer test CA" -extensions ca -config ext.cnf 2>/dev/null

serial=1
issue() { # name keyspec section email
    name=$1 spec=$2 section=$3
    EMAIL=$4
    export EMAIL
    case "$spec" in
        rsa:*) openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${spec#rsa:}" -out "$name.key" 2>/dev/null ;;
        ec:*) openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:${spec#ec:}" -out "$name.key" 2>/dev/null ;;
    esac
    openssl req -new -key "$name.key" -subj "/O=Sealgate tests/CN=$name/emailAddress=$EMAIL" \
        -out "$name.csr" -config ext.cnf 2>/dev/null
    serial=$((serial + 1))
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -set_serial "$serial" -days 30 \
        -extfile ext.cnf -extensions "$section" -out "$name.pem" 2>/dev/null
    openssl pkcs12 -export -in "$name.pem" -inkey "$name.key" -certfile ca.pem \
        -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1 -passout pass: -out "$name.p12"
    rm -f "$name.csr"
}

issue rsa2048 rsa:2048 rsa rsa2048@peer.test
issue rsa3072 rsa:3072 rsa rsa3072@peer.test
issue rsa4096 rsa:4096 rsa rsa4096@peer.test
issue p256 ec:P-256 ec p256@peer.test
issue p384 ec:P-384 ec p384@peer.test
issue other rsa:2048 rsa other@elsewhere.test
echo "make-peers: wrote the peer keys and certificates to $out"
