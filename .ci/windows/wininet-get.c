/* wininet-get.exe URL: a Windows program that finds its proxy the way most Windows
 * programs do, from the user's settings (InternetOpen with INTERNET_OPEN_TYPE_PRECONFIG, no
 * proxy of its own), fetches URL and prints
 *
 *   status 403
 *   <the body>
 *
 * Exit 0 when an HTTP answer came (whatever its status), 1 when none did (the WinINet error
 * is printed). Used by .ci/windows/installer.sh to show where the user's own programs'
 * traffic goes before, during and after GuardNest.
 * Built by installer.sh: x86_64-w64-mingw32-gcc -O2 -municode -o wininet-get.exe wininet-get.c -lwininet */
#include <windows.h>
#include <wininet.h>
#include <stdio.h>

int wmain(int argc, wchar_t **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: wininet-get URL\n");
        return 2;
    }
    HINTERNET net = InternetOpenW(L"guardnest-installer-test", INTERNET_OPEN_TYPE_PRECONFIG, NULL, NULL, 0);
    if (!net) {
        printf("InternetOpen failed: error %lu\n", GetLastError());
        return 1;
    }
    DWORD timeout = 20000;
    InternetSetOptionW(net, INTERNET_OPTION_CONNECT_TIMEOUT, &timeout, sizeof timeout);
    InternetSetOptionW(net, INTERNET_OPTION_RECEIVE_TIMEOUT, &timeout, sizeof timeout);
    DWORD flags = INTERNET_FLAG_RELOAD | INTERNET_FLAG_NO_CACHE_WRITE | INTERNET_FLAG_PRAGMA_NOCACHE |
                  INTERNET_FLAG_NO_COOKIES | INTERNET_FLAG_NO_UI;
    HINTERNET req = InternetOpenUrlW(net, argv[1], NULL, 0, flags, 0);
    if (!req) {
        printf("InternetOpenUrl failed: error %lu\n", GetLastError());
        InternetCloseHandle(net);
        return 1;
    }
    DWORD status = 0, len = sizeof status;
    if (!HttpQueryInfoW(req, HTTP_QUERY_STATUS_CODE | HTTP_QUERY_FLAG_NUMBER, &status, &len, NULL)) {
        printf("HttpQueryInfo failed: error %lu\n", GetLastError());
        return 1;
    }
    printf("status %lu\n", (unsigned long)status);
    char buf[4096];
    DWORD got = 0;
    while (InternetReadFile(req, buf, sizeof buf, &got) && got > 0) {
        fwrite(buf, 1, got, stdout);
    }
    fflush(stdout);
    InternetCloseHandle(req);
    InternetCloseHandle(net);
    return 0;
}
