# bench/plot.gp - the chart of bench/fanout.sh: two panels, deliveries/s and
# p99 latency per scenario, uvmq next to mosquitto, both on log scales.
# Called as: gnuplot -e "datafile='F'; outfile='O.png'; chart_title='T'" plot.gp
# datafile columns: scenario, uvmq deliveries/s, mosquitto deliveries/s,
# uvmq p99 us, mosquitto p99 us; "-" marks a missing value.

if (!exists("chart_title")) chart_title = "uvmq vs mosquitto"
set terminal pngcairo size 1200,900 font "sans,11" enhanced
set output outfile
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside top center horizontal
set grid ytics mytics
set logscale y
set format y "10^{%L}"
set xtics nomirror
# Bar labels: 2 series per cluster, gap 1 -> bars at x -/+ 1/6.
fmtl(v) = v >= 1e6 ? sprintf("%.1fs", v / 1e6) : v >= 1e3 ? sprintf("%.0fms", v / 1e3) : sprintf("%.0fus", v)
fmt(v) = v >= 1e6 ? sprintf("%.1fM", v / 1e6) : v >= 1e4 ? sprintf("%.0fk", v / 1e3) : sprintf("%.0f", v)
set multiplot layout 2,1 title chart_title font ",13" noenhanced

set title "Deliveries per second (median of rounds; log scale, higher is better)" noenhanced
set ylabel "deliveries/s"
plot datafile using 2:xtic(1) title "uvmq" linecolor rgb "#1f6fb4", \
     '' using 3 title "mosquitto" linecolor rgb "#e8801a", \
     '' using ($0 - 1.0/6):2:(fmt($2)) with labels offset 0,0.6 font ",8" notitle, \
     '' using ($0 + 1.0/6):3:(fmt($3)) with labels offset 0,0.6 font ",8" notitle

set title "p99 latency (median of rounds; log scale, lower is better)" noenhanced
set ylabel "microseconds"
plot datafile using 4:xtic(1) title "uvmq" linecolor rgb "#1f6fb4", \
     '' using 5 title "mosquitto" linecolor rgb "#e8801a", \
     '' using ($0 - 1.0/6):4:(fmtl($4)) with labels offset 0,0.6 font ",8" notitle, \
     '' using ($0 + 1.0/6):5:(fmtl($5)) with labels offset 0,0.6 font ",8" notitle

unset multiplot
