# A deliberate fixture: the published test vector, marked so the scanner skips it.
TEST_TOKEN = "cendis_pat_rpV681Mm1OxfGvD71i4vLnaBAlJMAo0SYYFj"  # cendis-scan:allow
