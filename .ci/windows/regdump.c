/* regdump.exe: prints registry values of the current user exactly as stored, one line each,
 * for the installer test (.ci/windows/installer.sh) to compare byte for byte:
 *
 *   regdump.exe "Software\...\Internet Settings\ProxyServer" ...
 *   Software\...\Internet Settings\ProxyServer = REG_SZ, 48 bytes: 31 00 32 00 ... ("12...")
 *   Software\...\Internet Settings\AutoConfigURL = (absent)
 *
 * Each argument is a key path under HKEY_CURRENT_USER and a value name, split at the last
 * backslash. The type and every byte are printed (what `reg query` and `reg export` do not
 * show exactly: a string's terminator, its length); the text after the bytes is only for
 * people. Reads with RegQueryValueExW, as tests/windows.rs does. Exit 1 on a bad argument
 * or a read error other than "not found".
 * Built by installer.sh: x86_64-w64-mingw32-gcc -O2 -municode -o regdump.exe regdump.c */
#include <windows.h>
#include <stdio.h>
#include <wchar.h>

static const char *type_name(DWORD t) {
    switch (t) {
    case REG_SZ: return "REG_SZ";
    case REG_EXPAND_SZ: return "REG_EXPAND_SZ";
    case REG_BINARY: return "REG_BINARY";
    case REG_DWORD: return "REG_DWORD";
    case REG_MULTI_SZ: return "REG_MULTI_SZ";
    case REG_QWORD: return "REG_QWORD";
    default: return "REG_OTHER";
    }
}

int wmain(int argc, wchar_t **argv) {
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        wchar_t path[1024];
        if (wcslen(argv[i]) >= 1024) { fprintf(stderr, "argument too long\n"); return 1; }
        wcscpy(path, argv[i]);
        wchar_t *slash = wcsrchr(path, L'\\');
        if (!slash) { fprintf(stderr, "no value name in %ls\n", argv[i]); return 1; }
        *slash = 0;
        const wchar_t *name = slash + 1;
        printf("%ls\\%ls = ", path, name);
        HKEY key;
        LONG e = RegOpenKeyExW(HKEY_CURRENT_USER, path, 0, KEY_QUERY_VALUE, &key);
        if (e == ERROR_FILE_NOT_FOUND) { printf("(absent)\n"); continue; }
        if (e != ERROR_SUCCESS) { printf("(cannot open the key: error %ld)\n", e); rc = 1; continue; }
        static BYTE data[65536];
        DWORD type = 0, len = sizeof data;
        e = RegQueryValueExW(key, name, NULL, &type, data, &len);
        RegCloseKey(key);
        if (e == ERROR_FILE_NOT_FOUND) { printf("(absent)\n"); continue; }
        if (e != ERROR_SUCCESS) { printf("(cannot read: error %ld)\n", e); rc = 1; continue; }
        printf("%s, %lu bytes:", type_name(type), (unsigned long)len);
        for (DWORD j = 0; j < len; j++) printf(" %02x", data[j]);
        if ((type == REG_SZ || type == REG_EXPAND_SZ) && len >= 2) {
            printf(" (\"%.*ls\")", (int)(len / 2), (wchar_t *)data);
        } else if (type == REG_DWORD && len == 4) {
            printf(" (%lu)", (unsigned long)*(DWORD *)data);
        }
        printf("\n");
    }
    return rc;
}
