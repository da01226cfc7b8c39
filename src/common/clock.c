/* SPDX-License-Identifier: Apache-2.0 */
/* Wall-clock times as the APIs show them (clock.h). */
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void obx_time_rfc3339(int64_t unix_ms, char out[static 40])
{
    time_t secs = (time_t)(unix_ms / 1000);
    int ms = (int)(unix_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs--;
    }
    struct tm tm;
    localtime_r(&secs, &tm);
    char base[24], frac[8] = "", zone[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    if (ms) {
        snprintf(frac, sizeof(frac), ".%03d", ms);
        for (size_t n = strlen(frac); n > 1 && frac[n - 1] == '0'; n--)
            frac[n - 1] = '\0';
    }
    long off = tm.tm_gmtoff / 60;
    if (off == 0)
        snprintf(zone, sizeof(zone), "Z");
    else
        snprintf(zone, sizeof(zone), "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 60,
                 labs(off) % 60);
    size_t n = strlen(base);
    memcpy(out, base, n + 1);
    n += (size_t)snprintf(out + n, 40 - n, "%s", frac);
    snprintf(out + n, 40 - n, "%.6s", zone);
}
