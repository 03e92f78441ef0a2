/* main.c: the duckspread command line. */
#include <stdio.h>
int main(void)
{
    puts("duckspread");
    return 0;
}
