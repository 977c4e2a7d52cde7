/* A stand-in bcryptprimitives.dll for Wine 8, which lacks ProcessPrng: Rust's standard
 * library (1.78 and later) imports it to seed HashMap and the like, so without this DLL
 * beside it no Rust program for x86_64-pc-windows-gnu starts under Wine 8.
 * Built by .ci/windows.sh:  x86_64-w64-mingw32-gcc -O2 -shared -o bcryptprimitives.dll
 *                           wine-bcryptprimitives.c -ladvapi32
 * ProcessPrng is documented never to fail; RtlGenRandom (SystemFunction036) is Wine's
 * cryptographic generator. */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n) {
    while (n) {
        ULONG k = n > 0x7fffffff ? 0x7fffffff : (ULONG)n;
        if (!RtlGenRandom(p, k)) return FALSE;
        p += k;
        n -= k;
    }
    return TRUE;
}
