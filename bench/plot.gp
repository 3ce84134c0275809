# bench/run's plot: transfer throughput and p99 versus clients, per mode.
# gnuplot -e "datadir='DIR'; out='DIR/benchmarks.png'; cores='2'" bench/plot.gp
set terminal pngcairo size 1200,480 font ",10"
set output out
if (!exists("cores")) cores = "2"
set multiplot layout 1,2 title "txbench transfer (1 UPDATE on PostgreSQL + 1 on MariaDB), ".cores." cores"
set logscale x 2
set xlabel "clients"
set key top left
set grid
modes = "txcoord-oneshot txcoord-session txcoord-oneshot-lr txcoord-session-lr direct-2pc direct-1pc sqlalchemy-twophase"
set ylabel "transactions/s"
set yrange [0:*]
plot for [m in modes] datadir."/".m.".dat" using 1:2 with linespoints title m
set ylabel "p99 latency (ms)"
set logscale y
set yrange [*:*]
plot for [m in modes] datadir."/".m.".dat" using 1:3 with linespoints title m
unset multiplot
