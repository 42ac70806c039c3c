/*
 * ProcessPrng stand-in for Wine 8.0, which ships no bcryptprimitives.dll.
 *
 * Rust's standard library (1.78 and later) on Windows takes its random bytes (HashMap seeds)
 * from bcryptprimitives!ProcessPrng; ktimer-test.exe imports it and would not start under
 * Wine 8 (STATUS_DLL_NOT_FOUND). tests/wine/run.sh builds this DLL with mingw-w64 and puts it
 * next to the exe only when the exe imports ProcessPrng and Wine has no such DLL.
 * The bytes come from advapi32!SystemFunction036 (RtlGenRandom), which Wine implements.
 */
#include <windows.h>
#include <ntsecapi.h>

/* Fills `buffer` with `length` random bytes; TRUE on success (the real one always succeeds). */
BOOL WINAPI ProcessPrng(PBYTE buffer, SIZE_T length)
{
    /* RtlGenRandom takes a ULONG count: feed it at most 1 GiB at a time. */
    const SIZE_T max_chunk = (SIZE_T)1 << 30;
    while (length > 0) {
        ULONG chunk = (ULONG)(length < max_chunk ? length : max_chunk);
        if (!RtlGenRandom(buffer, chunk))
            return FALSE;
        buffer += chunk;
        length -= chunk;
    }
    return TRUE;
}
