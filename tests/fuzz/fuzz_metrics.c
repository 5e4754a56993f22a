// tests/fuzz/fuzz_metrics.c — collect's in-place scanner for metrics.jsonl lines
// (orchestrator/collect.c scan_line, a static function: this file includes collect.c to reach
// it, without changing it). Differential against jansson: a line the scanner accepts must be a
// JSON object to jansson with the same keys and, for numbers, the same values; a line it hands
// on (SCAN_JANSSON) or rejects is jansson's to decide, as in ingest_metrics.
#include "orchestrator/collect.c"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *nl = memchr(p, '\n', size);   // collect hands the scanner one line at a time
    if (nl) end = nl;
    Field f[MAX_FIELDS];
    int nf = 0;
    if (scan_line(p, end, f, &nf) != SCAN_OK) return 0;
    json_error_t je;
    json_t *obj = json_loadb(p, (size_t)(end - p), 0, &je);
    fuzz_check(obj != NULL, "scanner accepted what jansson rejects (%s at column %d): '%.*s'", je.text, je.column,
               (int)(end - p), p);
    fuzz_check(json_is_object(obj), "scanner accepted a non-object");
    fuzz_check((int)json_object_size(obj) <= nf, "jansson has %zu keys, scanner %d", json_object_size(obj), nf);
    for (int i = 0; i < nf; i++) {
        char key[512];
        if (f[i].klen >= sizeof key) continue;
        memcpy(key, f[i].key, f[i].klen);
        key[f[i].klen] = 0;
        json_t *v = json_object_get(obj, key);
        fuzz_check(v != NULL, "key '%s' missing in jansson's object", key);
        int later = 0;   // a duplicate key: jansson keeps the last value
        for (int k = i + 1; k < nf; k++) later |= f[k].klen == f[i].klen && memcmp(f[k].key, f[i].key, f[i].klen) == 0;
        if (later) continue;
        switch (f[i].type) {
        case 'n':
            fuzz_check(json_is_number(v), "key '%s': scanner number, jansson type %d", key, json_typeof(v));
            fuzz_check(json_number_value(v) == f[i].num, "key '%s': scanner %.17g, jansson %.17g", key, f[i].num,
                       json_number_value(v));
            break;
        case 's': fuzz_check(json_is_string(v), "key '%s': type", key); break;
        case 'z': fuzz_check(json_is_null(v), "key '%s': type", key); break;
        case 'b': fuzz_check(json_is_boolean(v), "key '%s': type", key); break;
        case 'a': fuzz_check(json_is_array(v), "key '%s': type", key); break;
        case 'o': fuzz_check(json_is_object(v), "key '%s': type", key); break;
        }
    }
    json_decref(obj);
    return 0;
}
