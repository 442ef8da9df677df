data_root = '{{ fileDirname }}/../data'
work_dir = '{{ fileDirname }}/work/{{ fileBasenameNoExtension }}'
