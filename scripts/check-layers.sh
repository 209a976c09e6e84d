#!/bin/sh
# check-layers.sh - checks that uvmq's folders include one another only in
# the directions the layering allows (cli over broker, broker over the
# modules it ties together, common under all; the tables below), and draws
# the folder graph.
#
#   scripts/check-layers.sh             check the repository: one summary
#                                       line and exit 0 when the layering
#                                       holds, else one line per violation
#                                       ("FILE:LINE: <include> breaks rule:
#                                       ...") and exit 1
#   scripts/check-layers.sh --dot       print the folder graph in graphviz
#                                       dot instead (make docs draws it)
#   scripts/check-layers.sh --root DIR  check or draw the tree at DIR
#
# A bad option or a tree it cannot read makes it exit 2.
#
# It reads every #include line of the .c and .h files in the product
# folders (the first table below; tests/ and bench/ may reach internals and
# are not read). A quoted include is looked up beside the including file,
# then from the repository root (the Makefile passes -I.), as the compiler
# does; an angle include is ours when it names a file from the root, and
# otherwise a system or library header, which matters only for the library
# table. Comments are skipped, so an include in a comment counts for
# nothing. The rules are the tables below; read them first.
#
# The script is perl behind a sh front line (a Debian machine with
# build-essential has perl and awk but maybe no python3): perl -x runs what
# follows the "#!perl" line.
exec perl -x "$0" "$@"
#!perl
use strict;
use warnings;

# ---------------------------------------------------------------------------
# The rules.
#
# 1. Folders: each product folder may include its own files, system headers,
#    and the folders on its row; nothing else of ours. The rows read from
#    the top of the layering down: cli over broker, broker over the modules
#    it ties together, common under everything. A folder with C sources
#    that has no row here is an error, so a new module cannot slip past.
my $FOLDERS = <<'END';
# folder    may include (besides itself and system headers)
cli         broker tls http ws auth cluster storage queue router packets common
broker      tls http ws auth cluster storage queue router packets common
http        broker tls packets queue router common
ws          broker tls packets queue router common
cluster     broker tls packets queue router common
auth        common
tls         common
storage     common
queue       packets common
router      common
packets     common
common      -
END

# 2. Public headers: outside its folder, a module is reached only through
#    the headers on its row; a folder without a row has one, <folder>.h
#    (router/router.h, queue/queue.h, tls/tls.h, http/http.h). "*" makes
#    every header public. So http/, ws/ and cluster/ reach broker/ only
#    through broker.h, transport.h and sink.h.
my $PUBLIC = <<'END';
# folder    its public headers
broker      broker.h transport.h sink.h
packets     pkt.h packets.h
storage     store.h storage.h
common      *
END

# 3. Narrower still: a folder that reaches another only through some of its
#    public headers.
my $THROUGH = <<'END';
# folder    reaches     only through
cli         broker      broker.h
END

# 4. Libraries: the headers of each external library, and the folders that
#    may include them ("not ..." lists the folders that may not). Each
#    library's results are translated in the one module that calls it.
my $LIBRARIES = <<'END';
# library   its headers (a trailing / is a directory)   included only in
libuv       uv.h uv/                    not common packets router auth
OpenSSL     openssl/                    tls auth
SQLite      sqlite3.h sqlite3ext.h      storage
nghttp2     nghttp2/                    http
cJSON       cJSON.h cjson/              cli broker http cluster
wslay       wslay/                      ws
argon2      argon2.h                    auth
libnats     nats.h nats/                cluster
END

# 5. And, in words:
#    - a module's internal header (<name>_int.h) is included only by files in
#      its own folder;
#    - no include cycle between folders, even one made of allowed edges
#      (broker/ including http/http.h while http/ includes broker/broker.h);
#    - every include names, literally, a file inside the repository: a typo,
#      a path that climbs out of the tree or a macro include is an error.
# ---------------------------------------------------------------------------

my $INT_RULE = "a module's internal header (*_int.h) is included only by files in its own folder";
my $CYCLE_RULE = 'no include cycle between folders';
my $MISSING_RULE = 'an include names a file that exists (looked up beside the including file, '
    . 'then from the repository root)';
my $OUTSIDE_RULE = 'includes stay inside the repository';
my $MACRO_RULE = 'an include names its file literally (the check cannot follow a macro)';
my $UNLISTED_RULE = 'every folder of product sources has a row in the folder table';
# Top-level folders that are not product sources.
my %NOT_PRODUCT = map { $_ => 1 } qw(tests bench build docs scripts data);

sub usage {
    print STDERR "usage: $0 [--root DIR] [--dot]\n";
    exit 2;
}

# An error that is not a violation (a bad root, an unreadable file): exit 2.
sub fail {
    print STDERR "check-layers: $_[0]\n";
    exit 2;
}

# Reads a table: rows of whitespace-separated words, "#" lines skipped.
sub table_rows {
    my ($text) = @_;
    return map { [split ' '] } grep { /\S/ && !/^\s*#/ } split /\n/, $text;
}

# "a/", "a/ and b/", "a/, b/ and c/".
sub words_and {
    my @w = @_;
    return $w[0] if @w == 1;
    return join(', ', @w[0 .. $#w - 1]) . " and $w[-1]";
}

my (%may, %public, %through, @libs);
for my $r (table_rows($FOLDERS)) {
    my ($f, @to) = @$r;
    $may{$f} = { map { $_ => 1 } grep { $_ ne '-' } @to };
}
for my $r (table_rows($PUBLIC)) {
    my ($f, @h) = @$r;
    $public{$f} = [@h];
}
for my $r (table_rows($THROUGH)) {
    my ($f, $to, @h) = @$r;
    $through{$f}{$to} = [@h];
}
for my $r (table_rows($LIBRARIES)) {
    my ($name, @rest) = @$r;
    my (@headers, @folders, $deny);
    for my $w (@rest) {
        if (@folders || defined $deny || ($w !~ /\.h$/ && $w !~ m{/$})) {
            if ($w eq 'not' && !@folders) { $deny = 1; next }
            push @folders, $w;
        } else {
            push @headers, $w;
        }
    }
    push @libs, { name => $name, headers => [@headers], folders => { map { $_ => 1 } @folders },
        list => [@folders], deny => $deny };
}

sub public_headers {
    my ($folder) = @_;
    return @{ $public{$folder} // ["$folder.h"] };
}

# The rule a folder's row states, in words.
sub folder_rule {
    my ($f) = @_;
    my @to = grep { $may{$f}{$_} } map { $_->[0] } table_rows($FOLDERS);
    return "$f/ includes nothing of ours outside $f/" unless @to;
    return "$f/ includes only " . words_and(map {"$_/"} @to) . ' (and system headers)';
}

sub lib_rule {
    my ($lib) = @_;
    my $what = "$lib->{name} (" . join(', ', map { m{/$} ? "<$_...>" : $_ } @{ $lib->{headers} }) . ')';
    my @f = map {"$_/"} @{ $lib->{list} };
    return "$what is kept out of " . words_and(@f) if $lib->{deny};
    return "$what is included only in " . words_and(@f);
}

# The library a header name belongs to, if any.
sub library_of {
    my ($name) = @_;
    for my $lib (@libs) {
        for my $h (@{ $lib->{headers} }) {
            return $lib if $h =~ m{/$} ? index($name, $h) == 0 : $name eq $h;
        }
    }
    return undef;
}

sub lib_allowed {
    my ($lib, $folder) = @_;
    return $lib->{deny} ? !$lib->{folders}{$folder} : $lib->{folders}{$folder};
}

# ---------------------------------------------------------------------------
# The scan.

my $root;
my $dot = 0;
while (@ARGV) {
    my $opt = shift @ARGV;
    if ($opt eq '--dot') { $dot = 1 }
    elsif ($opt eq '--root') { $root = shift @ARGV // usage() }
    elsif ($opt =~ /^--root=(.*)$/) { $root = $1 }
    elsif ($opt eq '-h' || $opt eq '--help') { usage() }
    else { usage() }
}
if (!defined $root) {
    # The repository this script lives in: scripts/..
    ($root = $0) =~ s{/?[^/]*$}{};
    $root = ($root eq '' ? '.' : $root) . '/..';
}
fail("$root is not a directory") unless -d $root;
$root =~ s{/+$}{} unless $root eq '/';

# "a/./b/../c" -> "a/c"; undef when the path climbs above the root.
sub normalize {
    my @out;
    for my $p (split m{/+}, $_[0]) {
        next if $p eq '' || $p eq '.';
        if ($p eq '..') {
            return undef unless @out;
            pop @out;
            next;
        }
        push @out, $p;
    }
    return join '/', @out;
}

sub files_under {
    my ($dir) = @_;
    my @found;
    opendir(my $dh, "$root/$dir") or return ();
    for my $e (sort readdir $dh) {
        next if $e =~ /^\./;
        if (-d "$root/$dir/$e") { push @found, files_under("$dir/$e") }
        elsif ($e =~ /\.[ch]$/) { push @found, "$dir/$e" }
    }
    closedir $dh;
    return @found;
}

# A comment becomes one space and the newlines it spanned.
sub blank {
    my ($comment) = @_;
    return ' ' . ("\n" x ($comment =~ tr/\n//));
}

# The text of a file with its comments blanked (newlines kept, so line
# numbers hold) and its string literals left alone.
sub without_comments {
    my ($path) = @_;
    open(my $fh, '<', $path) or fail("cannot read $path: $!");
    local $/;
    my $text = <$fh>;
    close $fh;
    $text =~ s{("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|/\*.*?\*/|//[^\n]*}
              {defined $1 ? $1 : blank($&)}gse;
    return $text;
}

# Where an include leads: ('file', path from the root), ('lib', library),
# ('system'), ('outside') or ('missing').
sub resolve {
    my ($dir, $quoted, $name) = @_;
    my @cands = $quoted ? ("$dir/$name", $name) : ($name);
    my $escapes = $name =~ m{^/};
    if (!$escapes) {
        for my $c (@cands) {
            my $n = normalize($c);
            if (!defined $n) {
                $escapes = 1;
                return ('outside') if -f "$root/$c";
                next;
            }
            return ('file', $n) if $n ne '' && -f "$root/$n";
        }
    }
    return ('outside') if $escapes;
    my $lib = library_of($name);
    return ('lib', $lib) if $lib;
    return $quoted ? ('missing') : ('system');
}

my @product = map { $_->[0] } table_rows($FOLDERS);
my (@violations, %edge, %lib_edge, %bad_edge, %bad_lib_edge, %present);
my ($nfiles, $nincludes) = (0, 0);

sub violation {
    my ($where, $inc, $rule) = @_;
    push @violations, "$where: $inc breaks rule: $rule";
}

# A top-level folder with C sources but no row is an error.
opendir(my $rh, $root) or fail("cannot read $root: $!");
for my $d (sort readdir $rh) {
    next if $d =~ /^\./ || $NOT_PRODUCT{$d} || $may{$d} || !-d "$root/$d";
    my @c = files_under($d);
    push @violations, "$d/: breaks rule: $UNLISTED_RULE ($d/ holds $c[0])" if @c;
}
closedir $rh;

for my $folder (@product) {
    for my $file (files_under($folder)) {
        $present{$folder} = 1;
        $nfiles++;
        (my $dir = $file) =~ s{/[^/]*$}{};
        my $ln = 0;
        for my $line (split /\n/, without_comments("$root/$file"), -1) {
            $ln++;
            next unless $line =~ /^\s*#\s*include\b\s*(.*?)\s*$/;
            my $arg = $1;
            $nincludes++;
            my $at = "$file:$ln";
            if ($arg !~ /^(?:"([^"]+)"|<([^>]+)>)/) {
                violation($at, $arg, $MACRO_RULE);
                next;
            }
            my ($quoted, $name) = defined $1 ? (1, $1) : (0, $2);
            my $inc = $quoted ? "\"$name\"" : "<$name>";
            my ($kind, $what) = resolve($dir, $quoted, $name);
            if ($kind eq 'missing') { violation($at, $inc, $MISSING_RULE); next }
            if ($kind eq 'outside') { violation($at, $inc, $OUTSIDE_RULE); next }
            if ($kind eq 'system') { next }
            if ($kind eq 'lib') {
                $lib_edge{$folder}{ $what->{name} } //= $at;
                next if lib_allowed($what, $folder);
                violation($at, $inc, lib_rule($what));
                $bad_lib_edge{$folder}{ $what->{name} } = 1;
                next;
            }
            # One of our files: $what is its path from the root.
            my ($to, $base) = $what =~ m{/} ? ($what =~ m{^([^/]+)/(?:.*/)?([^/]+)$}) : ('.', $what);
            next if $to eq $folder;
            push @{ $edge{$folder}{$to} }, [$at, $inc];
            my $rule;
            if (!$may{$folder}{$to}) {
                $rule = folder_rule($folder);
            } elsif ($base =~ /_int\.h$/) {
                $rule = "$INT_RULE ($to/)";
            } elsif (!grep { $_ eq '*' || "$to/$_" eq $what } public_headers($to)) {
                my @p = map {"$to/$_"} public_headers($to);
                $rule = "outside $to/, only its public header" . (@p > 1 ? 's ' : ' ')
                    . words_and(@p) . (@p > 1 ? ' are' : ' is') . ' included';
            } elsif (my $only = $through{$folder}{$to}) {
                my @h = map {"$to/$_"} @$only;
                $rule = "$folder/ reaches $to/ only through " . words_and(@h) unless grep { $_ eq $what } @h;
            }
            if ($rule) {
                violation($at, $inc, $rule);
                $bad_edge{$folder}{$to} = 1;
            }
        }
    }
}

# Cycles: the strongly connected components (Tarjan) of the folder graph
# made of the edges the folder table allows. Every edge inside a component
# lies on a cycle; each is reported at its first include, with the shortest
# cycle through it. A cycle through an edge the table forbids is left out:
# that include is reported already, and the allowed edges on the rest of
# its cycle are not at fault.
sub allowed_next {
    my ($v) = @_;
    return grep { $may{$v} && $may{$v}{$_} } sort keys %{ $edge{$v} // {} };
}

my (%index, %low, %on, @stack, %comp);
my ($next_index, $ncomp) = (0, 0);
sub strongconnect {
    my ($v) = @_;
    $index{$v} = $low{$v} = $next_index++;
    push @stack, $v;
    $on{$v} = 1;
    for my $w (allowed_next($v)) {
        if (!defined $index{$w}) {
            strongconnect($w);
            $low{$v} = $low{$w} if $low{$w} < $low{$v};
        } elsif ($on{$w}) {
            $low{$v} = $index{$w} if $index{$w} < $low{$v};
        }
    }
    if ($low{$v} == $index{$v}) {
        $ncomp++;
        my $w;
        do {
            $w = pop @stack;
            $on{$w} = 0;
            $comp{$w} = $ncomp;
        } while ($w ne $v);
    }
}
for my $v (sort keys %edge) {
    strongconnect($v) unless defined $index{$v};
}

# The shortest path from $from to $to inside one component (breadth first).
sub path_within {
    my ($from, $to) = @_;
    my %prev = ($from => undef);
    my @queue = ($from);
    while (@queue) {
        my $v = shift @queue;
        last if $v eq $to;
        for my $w (allowed_next($v)) {
            next if exists $prev{$w} || ($comp{$w} // 0) != $comp{$from};
            $prev{$w} = $v;
            push @queue, $w;
        }
    }
    my @path = ($to);
    unshift @path, $prev{ $path[0] } while defined $prev{ $path[0] };
    return @path;
}

for my $u (sort keys %edge) {
    for my $v (allowed_next($u)) {
        next unless defined $comp{$v} && $comp{$u} == $comp{$v};
        my @sites = @{ $edge{$u}{$v} };
        my ($at, $inc) = @{ $sites[0] };
        my $cycle = join ' -> ', $u, path_within($v, $u);
        my $more = @sites == 1 ? ''
            : @sites == 2 ? '; 1 more include makes this edge'
            : sprintf('; %d more includes make this edge', @sites - 1);
        violation($at, $inc, "$CYCLE_RULE ($cycle$more)");
        $bad_edge{$u}{$v} = 1;
    }
}

# ---------------------------------------------------------------------------
# The drawing: one node per folder, one edge per folder that includes
# another, cli on top; common and the external libraries (grey boxes, with
# dashed edges from the folders that include them) on the bottom row.
# An include that breaks a rule makes its edge red.

if ($dot) {
    my @nodes = grep { $present{$_} } @product;
    my %drawn = map { $_ => 1 } @nodes;
    for my $u (sort keys %edge) {
        for my $v (sort keys %{ $edge{$u} }) {
            push @nodes, $v unless $drawn{$v}++;
        }
    }
    my %used_lib = map { %{ $lib_edge{$_} } } keys %lib_edge;
    print <<'END';
digraph uvmq {
    graph [rankdir=TB, nodesep=0.35, ranksep=0.55, fontname="Helvetica", fontsize=12,
           labelloc=b, label="uvmq: which folder includes which (scripts/check-layers.sh --dot).\n\
Grey boxes are external libraries; a red edge is an include that breaks the layering."];
    node [shape=folder, style=filled, fillcolor="#dbe7f5", color="#4a6a94", fontname="Helvetica",
          fontsize=13];
    edge [color="#3c4a5c", arrowsize=0.7];
END
    print "    { rank=min; \"cli\"; }\n" if $drawn{cli};
    print "    \"$_\";\n" for @nodes;
    for my $u (sort keys %edge) {
        for my $v (sort keys %{ $edge{$u} }) {
            my $attr = $bad_edge{$u}{$v} ? ' [color="#c62828", penwidth=2]' : '';
            print "    \"$u\" -> \"$v\"$attr;\n";
        }
    }
    if (%used_lib) {
        print "    node [shape=box, style=\"rounded,filled\", fillcolor=\"#eeeeee\", color=\"#888888\",",
            " fontsize=11];\n";
        print "    edge [style=dashed, color=\"#9a9a9a\", arrowsize=0.6];\n";
        for my $lib (@libs) {
            print "    \"lib:$lib->{name}\" [label=\"$lib->{name}\"];\n" if $used_lib{ $lib->{name} };
        }
        for my $u (sort keys %lib_edge) {
            for my $l (sort keys %{ $lib_edge{$u} }) {
                my $attr = $bad_lib_edge{$u}{$l} ? ', color="#c62828", style=solid' : '';
                print "    \"$u\" -> \"lib:$l\" [weight=0$attr];\n";
            }
        }
    }
    # common and the libraries make the bottom row.
    my @bottom = grep { $drawn{$_} } qw(common);
    push @bottom, map { "lib:$_->{name}" } grep { $used_lib{ $_->{name} } } @libs;
    print "    { rank=max; ", join(" ", map {"\"$_\";"} @bottom), " }\n" if @bottom;
    print "}\n";
    exit 0;
}

my $nedges = 0;
$nedges += keys %{ $edge{$_} } for keys %edge;
if (@violations) {
    print "$_\n" for @violations;
    printf "check-layers: %d violation%s in %d files (the rules: the tables atop scripts/check-layers.sh)\n",
        scalar @violations, @violations == 1 ? '' : 's', $nfiles;
    exit 1;
}
printf "check-layers: the layering holds (%d files, %d includes, %d folder edges)\n",
    $nfiles, $nincludes, $nedges;
exit 0;
